//! The results layer: what a boot's console says. Console lines and their printk
//! timestamps ([`lines`]), kernel reports and the runner's markers ([`console`]), the KTAP
//! test tree ([`ktap`]) and the verdict with its exit code ([`verdict`]). Pure functions of
//! the console text and how the VM run ended; the commands on top decide what to do with
//! them.

pub mod console;
pub mod ktap;
pub mod lines;
pub mod verdict;
