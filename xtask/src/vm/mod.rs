//! The VM layer: QEMU's command line ([`args`]), running a VM under supervision ([`run`])
//! and choosing the accelerator ([`accel`]). It knows nothing of what runs in the guest or
//! how its console is read; the commands on top bring the image and read the results.

pub mod accel;
pub mod args;
pub mod run;

pub use accel::{apply_accel, Accel};
pub use args::{qemu_binary, MachineArgs, VmSpec};
pub use run::{run_vm, run_vm_with, signal_on_parent_death, Ending, Limits, Terminal};
