// SPDX-License-Identifier: GPL-2.0
//! `module`: the kernel loads and unloads a Rust module built against it (the kernel's
//! `rust_minimal` sample, shipped in the initramfs as /lib/modules/extra/rust_minimal.ko).

use std::path::Path;

use super::{ensure, fail, skip, Ctx, OrFail, Suite, Test, TestResult};
use crate::util;

pub const SUITE: Suite = Suite {
    name: "module",
    tests: &[
        Test {
            name: "load_rust_minimal",
            run: load_rust_minimal,
        },
        Test {
            name: "listed_in_proc_modules",
            run: listed_in_proc_modules,
        },
        Test {
            name: "init_message_logged",
            run: init_message_logged,
        },
        Test {
            name: "unload_rust_minimal",
            run: unload_rust_minimal,
        },
        Test {
            name: "exit_message_logged",
            run: exit_message_logged,
        },
    ],
};

const KO: &str = "/lib/modules/extra/rust_minimal.ko";
const NAME: &str = "rust_minimal";
const INIT_MSG: &str = "Rust minimal sample (init)";
const EXIT_MSG: &str = "Rust minimal sample (exit)";

fn need_ko() -> TestResult {
    if !Path::new(KO).exists() {
        return skip(format!("{KO} not in the initramfs"));
    }
    Ok(())
}

fn need_loaded(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    match ctx.stash.get::<util::ModuleGuard>() {
        Some(g) if g.loaded => Ok(()),
        _ => fail(format!("{NAME} is not loaded (load_rust_minimal failed)")),
    }
}

fn in_proc_modules() -> Result<bool, super::Stop> {
    let text = util::read_file("/proc/modules").or_fail("/proc/modules")?;
    Ok(text
        .lines()
        .any(|l| l.split_whitespace().next() == Some(NAME)))
}

/// Waits up to a second for `msg` to appear in the kernel log.
fn log_contains(msg: &str) -> Result<bool, super::Stop> {
    let deadline = util::now_ns() + 1_000_000_000;
    loop {
        let log = util::kernel_log().or_fail("reading /dev/kmsg")?;
        if log.iter().any(|l| l.contains(msg)) {
            return Ok(true);
        }
        if util::now_ns() > deadline {
            return Ok(false);
        }
        util::sleep_ms(50);
    }
}

// Expect finit_module(2) to load the Rust sample module.
fn load_rust_minimal(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    ensure!(
        !in_proc_modules()?,
        "{NAME} is already loaded before the test"
    );
    let r = util::finit_module(Path::new(KO));
    if r.is_ok() {
        ctx.stash.put(util::ModuleGuard {
            name: NAME,
            loaded: true,
        });
    }
    ensure!(
        r.is_ok(),
        "finit_module({KO}): expected success, got {} (version magic or missing CONFIG_RUST?)",
        util::describe(&r)
    );
    Ok(())
}

// Expect the loaded module to be listed in /proc/modules.
fn listed_in_proc_modules(ctx: &mut Ctx) -> TestResult {
    need_loaded(ctx)?;
    ensure!(
        in_proc_modules()?,
        "/proc/modules: expected a line for {NAME}, found none"
    );
    Ok(())
}

// Expect the module's init to have logged its message.
fn init_message_logged(ctx: &mut Ctx) -> TestResult {
    need_loaded(ctx)?;
    ensure!(
        log_contains(INIT_MSG)?,
        "kernel log: expected {INIT_MSG:?}, not found"
    );
    Ok(())
}

// Expect delete_module(2) to unload it and /proc/modules to drop it.
fn unload_rust_minimal(ctx: &mut Ctx) -> TestResult {
    need_loaded(ctx)?;
    let r = util::delete_module(NAME);
    if r.is_ok() {
        // Update the guard in place: replacing it would run the old guard's Drop, which
        // would try to unload the module a second time.
        if let Some(g) = ctx.stash.get::<util::ModuleGuard>() {
            g.loaded = false;
        }
    }
    ensure!(
        r.is_ok(),
        "delete_module({NAME}): expected success, got {} (CONFIG_MODULE_UNLOAD?)",
        util::describe(&r)
    );
    ensure!(
        !in_proc_modules()?,
        "/proc/modules: {NAME} still listed after delete_module"
    );
    Ok(())
}

// Expect the module's exit (Drop) to have logged its message.
fn exit_message_logged(ctx: &mut Ctx) -> TestResult {
    need_ko()?;
    match ctx.stash.get::<util::ModuleGuard>() {
        Some(g) if !g.loaded => {}
        _ => return fail(format!("{NAME} was not unloaded by unload_rust_minimal")),
    }
    ensure!(
        log_contains(EXIT_MSG)?,
        "kernel log: expected {EXIT_MSG:?}, not found"
    );
    Ok(())
}
