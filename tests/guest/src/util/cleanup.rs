// SPDX-License-Identifier: GPL-2.0
//! Cleanup warnings: problems found while a guard undoes what it created, printed by the runner.

use super::*;

thread_local! {
    static WARNINGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Queues a message (typically a cleanup problem) for the runner to print as a diagnostic.
pub fn warn(msg: impl Into<String>) {
    WARNINGS.with(|w| w.borrow_mut().push(msg.into()));
}

/// Takes the queued warnings.
pub fn take_warnings() -> Vec<String> {
    WARNINGS.with(|w| std::mem::take(&mut *w.borrow_mut()))
}
