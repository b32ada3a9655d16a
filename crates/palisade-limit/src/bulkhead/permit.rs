use std::fmt;

use super::core::Core;
use crate::sync::Arc;

/// A permit to run one call, borrowed from a [`Bulkhead`](crate::Bulkhead); the call
/// slot is released when it is dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    core: &'a Core,
}

impl<'a> Permit<'a> {
    pub(crate) fn new(core: &'a Core) -> Self {
        Permit { core }
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.release();
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

/// A permit that owns a handle to its [`Bulkhead`](crate::Bulkhead), for futures
/// that must be `'static`; the call slot is released when it is dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct OwnedPermit {
    core: Arc<Core>,
}

impl OwnedPermit {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        OwnedPermit { core }
    }
}

impl Drop for OwnedPermit {
    #[inline]
    fn drop(&mut self) {
        self.core.release();
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit").finish_non_exhaustive()
    }
}

/// Several permits taken at once from a [`Bulkhead`](crate::Bulkhead) (see
/// [`try_acquire_many`](crate::Bulkhead::try_acquire_many)); all are released
/// together when it is dropped.
#[must_use = "the permits are released as soon as they are dropped"]
pub struct Permits<'a> {
    core: &'a Core,
    count: u32,
}

impl<'a> Permits<'a> {
    pub(crate) fn new(core: &'a Core, count: u32) -> Self {
        Permits { core, count }
    }

    /// How many permits this holds.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl Drop for Permits<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.release_n(self.count);
    }
}

impl fmt::Debug for Permits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permits")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// As [`Permits`], owning a handle to its [`Bulkhead`](crate::Bulkhead), for
/// futures that must be `'static`.
#[must_use = "the permits are released as soon as they are dropped"]
pub struct OwnedPermits {
    core: Arc<Core>,
    count: u32,
}

impl OwnedPermits {
    pub(crate) fn new(core: Arc<Core>, count: u32) -> Self {
        OwnedPermits { core, count }
    }

    /// How many permits this holds.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl Drop for OwnedPermits {
    #[inline]
    fn drop(&mut self) {
        self.core.release_n(self.count);
    }
}

impl fmt::Debug for OwnedPermits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermits")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}
