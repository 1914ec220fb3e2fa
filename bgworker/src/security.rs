//! Running users' code with the users' rights: `SetUserIdAndSecContext` in a
//! security-restricted operation, as PostgreSQL's own maintenance commands do.
//!
//! A worker usually connects as a superuser. When it reads or writes a table that belongs to
//! someone else, PostgreSQL runs that table's code: CHECK constraints, index expressions,
//! triggers (including `ENABLE ALWAYS` ones, which `session_replication_role` does not stop),
//! row security policies. Run as the worker's role, that code would have the superuser's
//! rights, and the table's owner could make themselves superuser. [`Spi::as_table_owner`]
//! and [`Spi::as_role`] run a closure the way VACUUM, ANALYZE, CLUSTER, REINDEX and REFRESH
//! MATERIALIZED VIEW do since PostgreSQL's 2022 fix for that class of bug:
//!
//! - as the given role (`SetUserIdAndSecContext` with `SECURITY_LOCAL_USERID_CHANGE`), so the
//!   table's code has exactly its owner's rights;
//! - in a security-restricted operation (`SECURITY_RESTRICTED_OPERATION`): no `SET ROLE`, no
//!   `SET SESSION AUTHORIZATION`, no temporary tables, no deferred triggers, so that code
//!   cannot leave anything behind that runs later with more rights;
//! - with `search_path` set to `pg_catalog, pg_temp`, so unqualified names in the closure's
//!   SQL resolve to the system's functions and operators, never to look-alikes a user
//!   created in `public`;
//! - undone when the closure ends, also on an error or a panic: the role, the security
//!   context, and every setting changed inside (`AtEOXact_GUC`).
//!
//! Settings only a superuser may change (`session_replication_role`, ...) must be set before
//! the switch: inside, the role is the table owner's.
//!
//! ```no_run
//! # let relid = 16384u32;
//! bgworker::xact::transaction(|spi| {
//!     spi.execute("SET LOCAL lock_timeout = '1s'", &[])?;
//!     spi.as_table_owner(relid, |spi| {
//!         // Runs the table's triggers and constraints as its owner.
//!         spi.execute("UPDATE app.orders SET total = total WHERE id = $1", &[&7i64])
//!     })
//! })?;
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::ffi::CStr;

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys::{self, Oid};
use crate::spi::Spi;

/// `search_path` inside a restricted closure: the system catalogs, then temporary objects
/// (which a restricted operation cannot create).
///
/// ```
/// assert_eq!(bgworker::security::SAFE_SEARCH_PATH.to_str(), Ok("pg_catalog, pg_temp"));
/// ```
pub const SAFE_SEARCH_PATH: &CStr = c"pg_catalog, pg_temp";

/// Undoes a role switch: restores the settings changed since `nest_level` and the saved
/// user and security context. Runs on drop, so also when the closure panics.
struct Restore {
    nest_level: i32,
    user: Oid,
    security_context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !crate::xact::in_transaction() {
            // The transaction was rolled back under the closure; its abort restored both the
            // settings and the user.
            return;
        }
        let (level, user, context) = (self.nest_level, self.user, self.security_context);
        // SAFETY: restores the user and security context saved before the switch: plain
        // assignments, first, so that nothing below can skip them.
        let _ = guard(|| unsafe { pg_sys::SetUserIdAndSecContext(user, context) });
        // SAFETY: pops the GUC nest level this value pushed (and any deeper one an ERROR left
        // behind); valid also after a caught ERROR.
        let _ = guard(|| unsafe { pg_sys::AtEOXact_GUC(false, level) });
    }
}

impl Spi {
    /// Runs `f` as `role`, in a security-restricted operation with `search_path` pinned to
    /// `pg_catalog, pg_temp` (see the [module documentation](self)).
    ///
    /// ```no_run
    /// # let app_role = 16385u32;
    /// bgworker::xact::transaction(|spi| {
    ///     let me: String = spi.as_role(app_role, |spi| spi.query_one("SELECT current_user::text", &[]))?;
    ///     Ok(())
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn as_role<R>(&mut self, role: Oid, f: impl FnOnce(&mut Spi) -> Result<R>) -> Result<R> {
        self.check_usable()?;
        // SAFETY: a catalog lookup that returns NULL (no ERROR) for a role that is gone.
        let name = guard(|| unsafe { pg_sys::GetUserNameFromId(role, true) })?;
        if name.is_null() {
            return Err(Error::msg(format!("role with OID {role} does not exist")));
        }
        // SAFETY: a palloc'd copy of the name, not used again.
        unsafe { pg_sys::pfree(name.cast()) };

        let (mut user, mut security_context) = (pg_sys::InvalidOid, 0i32);
        let (u, c) = (&mut user as *mut Oid, &mut security_context as *mut i32);
        // SAFETY: reads the current user and security context into valid out pointers.
        guard(|| unsafe { pg_sys::GetUserIdAndSecContext(u, c) })?;
        // SAFETY: opens a GUC nest level that Restore pops.
        let nest_level = guard(|| unsafe { pg_sys::NewGUCNestLevel() })?;
        let restricted = security_context
            | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
            | pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        // SAFETY: switches the current user for this transaction; Restore switches back.
        guard(|| unsafe { pg_sys::SetUserIdAndSecContext(role, restricted) })?;
        let restore = Restore {
            nest_level,
            user,
            security_context,
        };
        let path = SAFE_SEARCH_PATH.as_ptr();
        // SAFETY: sets search_path at the new nest level (GUC_ACTION_SAVE), which Restore
        // rolls back; the strings are static.
        guard(|| unsafe {
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                path,
                pg_sys::GucContext_PGC_USERSET,
                pg_sys::GucSource_PGC_S_SESSION,
                pg_sys::GucAction_GUC_ACTION_SAVE,
                true,
                0,
                false,
            )
        })?;
        let result = f(self);
        drop(restore);
        result
    }

    /// Runs `f` as the owner of the table `relid` (see [`Spi::as_role`]): what a worker
    /// that reads or writes someone's table should do.
    ///
    /// ```no_run
    /// # let relid = 16384u32;
    /// let rows: i64 = bgworker::xact::transaction(|spi| {
    ///     spi.as_table_owner(relid, |spi| spi.query_one("SELECT count(*) FROM app.orders", &[]))
    /// })?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn as_table_owner<R>(
        &mut self,
        relid: Oid,
        f: impl FnOnce(&mut Spi) -> Result<R>,
    ) -> Result<R> {
        let owner: Option<Oid> = self.query_opt(
            "SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[&relid],
        )?;
        let owner =
            owner.ok_or_else(|| Error::msg(format!("relation with OID {relid} does not exist")))?;
        self.as_role(owner, f)
    }
}

/// The role whose rights this backend uses now (`current_user`; `GetUserId()`).
///
/// ```no_run
/// let me = bgworker::security::current_user();
/// # let _ = me;
/// ```
pub fn current_user() -> Oid {
    // SAFETY: a plain read of this backend's current user id.
    unsafe { pg_sys::GetUserId() }
}

/// Whether the current user has the privileges of `role`: is it, is a superuser, or is a
/// member that inherits it (`has_privs_of_role`). What to check before acting on something
/// that belongs to `role`, such as the job it submitted.
///
/// ```no_run
/// # let owner = 10u32;
/// if !bgworker::security::has_privileges_of(owner)? {
///     return Err(bgworker::PgError::new(
///         bgworker::SqlState::INSUFFICIENT_PRIVILEGE,
///         "permission denied",
///     )
///     .into());
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn has_privileges_of(role: Oid) -> Result<bool> {
    // The catalogs are read through caches that exist only in a connected process, inside
    // a transaction.
    // SAFETY: plain reads of this process's state.
    let ready = unsafe { !pg_sys::CacheMemoryContext.is_null() && pg_sys::IsTransactionState() };
    if !ready {
        return Err(Error::WrongContext(
            "security::has_privileges_of reads the catalogs: call it inside a transaction".into(),
        ));
    }
    let me = current_user();
    // SAFETY: a catalog lookup (it may read pg_auth_members); an ERROR is caught.
    Ok(guard(|| unsafe { pg_sys::has_privs_of_role(me, role) })?)
}

/// A random 64-bit value from the operating system's cryptographic source (the kernel's
/// `getrandom`, else `pg_strong_random`): for tokens another user must not guess, such as a
/// job handle's cookie.
///
/// ```no_run
/// let cookie = bgworker::security::unguessable_u64()?;
/// # let _ = cookie;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn unguessable_u64() -> Result<u64> {
    let mut bytes = [0u8; 8];
    let buf = bytes.as_mut_ptr();
    // The kernel's source directly: pg_strong_random goes through OpenSSL's generator,
    // which costs a job launch several microseconds more. Eight bytes come whole or not
    // at all once the pool is initialised (getrandom(2)); the system call itself, as
    // glibc's wrapper is newer than some systems PostgreSQL runs on.
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the kernel writes at most 8 bytes into `bytes`.
        let got = unsafe { libc::syscall(libc::SYS_getrandom, buf, bytes.len(), 0) };
        if got == bytes.len() as libc::c_long {
            return Ok(u64::from_ne_bytes(bytes));
        }
    }
    // SAFETY: writes 8 bytes into `bytes`.
    if !unsafe { pg_sys::pg_strong_random(buf.cast(), 8) } {
        return Err(Error::msg("could not generate a random number"));
    }
    Ok(u64::from_ne_bytes(bytes))
}
