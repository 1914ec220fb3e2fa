//! User-defined aggregates (`CREATE AGGREGATE` with an `internal` state) in safe Rust:
//! [`sql_aggregate!`](crate::sql_aggregate!).
//!
//! The state is a Rust value: created for a group's first row, updated for each row,
//! finished into a result, and dropped when PostgreSQL resets the aggregate's memory
//! context. Big buffers can live in that context ([`Memory::buffer`]), so that PostgreSQL's
//! memory accounting (hash aggregation spilling to disk, out-of-memory ERRORs) sees them.
//! A [`ParallelAggregate`] can also be combined and serialized, so parallel workers share
//! the scan.
//!
//! ```no_run
//! use bgworker::aggregate::{Aggregate, Args, Memory};
//!
//! /// Sum of squares of a double precision column.
//! struct SumSquares(f64);
//!
//! impl Aggregate for SumSquares {
//!     type Output = f64;
//!     fn init(_memory: &Memory, _args: &Args) -> bgworker::Result<Self> {
//!         Ok(SumSquares(0.0))
//!     }
//!     fn step(&mut self, _memory: &Memory, args: &Args) -> bgworker::Result<()> {
//!         if let Some(x) = args.get::<Option<f64>>(0)? {
//!             self.0 += x * x;
//!         }
//!         Ok(())
//!     }
//!     fn finish(&mut self) -> bgworker::Result<f64> {
//!         Ok(self.0)
//!     }
//! }
//!
//! bgworker::sql_aggregate! {
//!     #[sql(parallel_safe)]
//!     aggregate sum_squares("double precision"): SumSquares;
//! }
//! # fn main() {}
//! ```

use std::cell::Cell;
use std::ffi::c_void;
use std::rc::Rc;

use crate::datum::{FromSql, ToSql};
use crate::error::{Error, Position, Result};
use crate::guard::guard;
use crate::pg_sys::{self, Datum, FunctionCallInfo, Oid};

/// An aggregate's state and its steps. One value per group.
///
/// ```no_run
/// use bgworker::aggregate::{Aggregate, Args, Memory};
/// /// The product of the non-NULL values.
/// struct Product(f64);
/// impl Aggregate for Product {
///     type Output = f64;
///     fn init(_: &Memory, _: &Args) -> bgworker::Result<Self> { Ok(Product(1.0)) }
///     fn step(&mut self, _: &Memory, args: &Args) -> bgworker::Result<()> {
///         self.0 *= args.get::<Option<f64>>(0)?.unwrap_or(1.0);
///         Ok(())
///     }
///     fn finish(&mut self) -> bgworker::Result<f64> { Ok(self.0) }
/// }
/// bgworker::sql_aggregate! { aggregate product("float8"): Product }
/// # fn main() {}
/// ```
pub trait Aggregate: Sized + 'static {
    /// The aggregate's result.
    type Output: ToSql + crate::sql::SignatureType;
    /// The state for a group, made at its first row (which [`Aggregate::step`] then adds).
    fn init(memory: &Memory, args: &Args) -> Result<Self>;
    /// Adds one row.
    fn step(&mut self, memory: &Memory, args: &Args) -> Result<()>;
    /// The result. PostgreSQL may call it more than once (a window, or an aggregate used
    /// twice in a query) unless the state is left unusable; take what you need.
    fn finish(&mut self) -> Result<Self::Output>;
}

/// An aggregate whose partial states can be combined: parallel workers each aggregate part
/// of the rows, send their states to the leader serialized, and the leader combines them.
///
/// ```no_run
/// use bgworker::aggregate::{Aggregate, Args, Memory, ParallelAggregate};
/// struct Count(i64);
/// impl Aggregate for Count {
///     type Output = i64;
///     fn init(_: &Memory, _: &Args) -> bgworker::Result<Self> { Ok(Count(0)) }
///     fn step(&mut self, _: &Memory, _: &Args) -> bgworker::Result<()> { self.0 += 1; Ok(()) }
///     fn finish(&mut self) -> bgworker::Result<i64> { Ok(self.0) }
/// }
/// impl ParallelAggregate for Count {
///     fn combine(&mut self, other: &mut Self, _: &Memory) -> bgworker::Result<()> {
///         self.0 += other.0;
///         Ok(())
///     }
///     fn duplicate(&mut self, _: &Memory) -> bgworker::Result<Self> { Ok(Count(self.0)) }
///     fn serialize(&mut self) -> bgworker::Result<Vec<u8>> { Ok(self.0.to_le_bytes().to_vec()) }
///     fn deserialize(_: &Memory, bytes: &[u8]) -> bgworker::Result<Self> {
///         let bytes = bytes.try_into().map_err(|_| bgworker::Error::msg("bad state"))?;
///         Ok(Count(i64::from_le_bytes(bytes)))
///     }
/// }
/// bgworker::sql_aggregate! {
///     #[sql(parallel_safe)]
///     aggregate row_count("\"any\""): Count, parallel;
/// }
/// # fn main() {}
/// ```
pub trait ParallelAggregate: Aggregate {
    /// Adds `other`'s rows to `self`.
    fn combine(&mut self, other: &mut Self, memory: &Memory) -> Result<()>;
    /// A copy whose buffers live in `memory` (the state of another context, adopted).
    fn duplicate(&mut self, memory: &Memory) -> Result<Self>;
    /// The state as bytes, for another process.
    fn serialize(&mut self) -> Result<Vec<u8>>;
    /// A state from [`ParallelAggregate::serialize`]'s bytes; must refuse bad bytes.
    fn deserialize(memory: &Memory, bytes: &[u8]) -> Result<Self>;
}

/// The aggregate's memory context, for buffers that live as long as the group's state.
///
/// ```no_run
/// # fn f(memory: &bgworker::aggregate::Memory) -> bgworker::Result<()> {
/// let mut buffer = memory.buffer::<f64>(1024)?;
/// buffer.as_mut_slice()[0] = 1.0;
/// # Ok(()) }
/// ```
pub struct Memory {
    context: pg_sys::MemoryContext,
}

impl Memory {
    /// `len` default values (zeroes) in the aggregate's memory context.
    pub fn buffer<T: Element>(&self, len: usize) -> Result<Buffer<T>> {
        if len == 0 {
            return Ok(Buffer::empty());
        }
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::msg("aggregate buffer too large"))?;
        let (context, flags) = (self.context, pg_sys::MCXT_ALLOC_HUGE as i32);
        // SAFETY: allocates in the live aggregate context; failure is an ERROR guard returns.
        let ptr = guard(|| unsafe { pg_sys::MemoryContextAllocExtended(context, bytes, flags) })?
            as *mut T;
        let alive = Rc::new(Cell::new(true));
        // SAFETY: `ptr` has room for `len` values of T, aligned (palloc aligns to MAXALIGN,
        // and `Element` types need no more).
        unsafe {
            for i in 0..len {
                ptr.add(i).write(T::default());
            }
        }
        // SAFETY: the context is live; the callback frees the flag's reference.
        unsafe {
            on_reset(
                context,
                Rc::into_raw(alive.clone()) as *mut c_void,
                mark_dead,
            )?
        };
        Ok(Buffer { ptr, len, alive })
    }
}

/// A type an aggregate [`Buffer`] may hold: plain numbers, whose every bit pattern and
/// alignment palloc'd memory supports.
///
/// ```
/// fn holdable<T: bgworker::aggregate::Element>() {}
/// holdable::<f64>();
/// holdable::<i64>();
/// ```
///
/// # Safety
/// Implement only for `Copy` types with no padding, no invalid bit patterns and alignment
/// of at most 8.
pub unsafe trait Element: Copy + Default + 'static {}
// SAFETY: plain numbers, alignment at most 8.
unsafe impl Element for f64 {}
// SAFETY: as above.
unsafe impl Element for f32 {}
// SAFETY: as above.
unsafe impl Element for i64 {}
// SAFETY: as above.
unsafe impl Element for i32 {}
// SAFETY: as above.
unsafe impl Element for u64 {}
// SAFETY: as above.
unsafe impl Element for u8 {}

/// Values in an aggregate's memory context ([`Memory::buffer`]). Using one after its
/// context was reset (it was kept past its group) panics.
///
/// ```no_run
/// # fn f(memory: &bgworker::aggregate::Memory) -> bgworker::Result<()> {
/// let buffer = memory.buffer::<i64>(4)?;
/// assert_eq!(buffer.as_slice(), &[0, 0, 0, 0]);
/// # Ok(()) }
/// ```
pub struct Buffer<T: Element> {
    ptr: *mut T,
    len: usize,
    /// Cleared when the context is reset or deleted.
    alive: Rc<Cell<bool>>,
}

impl<T: Element> Buffer<T> {
    /// A buffer of no values (allocates nothing).
    pub fn empty() -> Buffer<T> {
        Buffer {
            ptr: std::ptr::NonNull::dangling().as_ptr(),
            len: 0,
            alive: Rc::new(Cell::new(true)),
        }
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        self.check();
        // SAFETY: `len` initialized values in a live context (checked), or a dangling
        // pointer with len 0.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The values, to change.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.check();
        // SAFETY: as above; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    fn check(&self) {
        assert!(
            self.alive.get(),
            "an aggregate buffer was used after its memory context was reset"
        );
    }
}

impl<T: Element> Drop for Buffer<T> {
    fn drop(&mut self) {
        if self.len > 0 && self.alive.get() && !crate::entry::exiting() {
            let ptr = self.ptr;
            // SAFETY: palloc'd by `Memory::buffer` in a context that is still live; nothing
            // else points to it.
            let _ = guard(|| unsafe { pg_sys::pfree(ptr.cast()) });
        }
    }
}

extern "C" fn mark_dead(arg: *mut c_void) {
    // SAFETY: registered with a reference from Rc::into_raw, given back exactly once here.
    let alive = unsafe { Rc::from_raw(arg as *const Cell<bool>) };
    alive.set(false);
}

/// Calls `func(arg)` when `context` is reset or deleted.
///
/// # Safety
/// `context` must be live; `func` must accept `arg` once.
unsafe fn on_reset(
    context: pg_sys::MemoryContext,
    arg: *mut c_void,
    func: extern "C" fn(*mut c_void),
) -> Result<()> {
    let size = std::mem::size_of::<pg_sys::MemoryContextCallback>();
    // SAFETY: the callback record lives in the context it watches, as PostgreSQL requires.
    let callback = guard(|| unsafe { pg_sys::MemoryContextAlloc(context, size) })?
        as *mut pg_sys::MemoryContextCallback;
    // SAFETY: fresh memory of the right size; registration cannot fail.
    unsafe {
        (*callback).func = Some(func);
        (*callback).arg = arg;
        (*callback).next = std::ptr::null_mut();
        pg_sys::MemoryContextRegisterResetCallback(context, callback);
    }
    Ok(())
}

/// The arguments of one aggregated row (after the state).
///
/// ```no_run
/// # fn f(args: &bgworker::aggregate::Args) -> bgworker::Result<()> {
/// for i in 0..args.len() {
///     let x: Option<f64> = args.get(i)?;
/// }
/// # Ok(()) }
/// ```
pub struct Args {
    fcinfo: FunctionCallInfo,
    first: usize,
    types: *const Oid,
}

impl Args {
    /// # Safety
    /// `fcinfo` must be the current call's; `first` at most its argument count.
    unsafe fn new(fcinfo: FunctionCallInfo, first: usize) -> Result<Args> {
        // SAFETY: forwarded.
        let types = unsafe { argument_types(fcinfo) }?;
        Ok(Args {
            fcinfo,
            first,
            types,
        })
    }

    /// How many arguments the row has.
    pub fn len(&self) -> usize {
        // SAFETY: the call's own argument count.
        unsafe { (*self.fcinfo).nargs as usize }.saturating_sub(self.first)
    }

    /// Whether the row has no arguments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The SQL type of argument `index`.
    pub fn sql_type(&self, index: usize) -> Result<Oid> {
        self.position(index)?;
        // SAFETY: `types` holds one OID per argument of the call (`position` checked).
        Ok(unsafe { *self.types.add(self.first + index) })
    }

    /// Argument `index` (from 0), as `T`; an error if `T` cannot read its type, or if it is
    /// NULL and `T` is not an `Option`.
    pub fn get<T: FromSql>(&self, index: usize) -> Result<T> {
        let at = self.position(index)?;
        let oid = self.sql_type(index)?;
        let position = Position::Argument(index + 1);
        if !T::accepts(oid) {
            return Err(crate::datum::wrong_type::<T>(oid).at(position));
        }
        // SAFETY: `at` < nargs; args is a flexible array of nargs.
        let arg = unsafe { *(*self.fcinfo).args.as_ptr().add(at) };
        // SAFETY: the Datum has type `oid` unless NULL.
        unsafe { T::from_datum(arg.value, arg.isnull, oid) }.map_err(|e| e.at(position))
    }

    fn position(&self, index: usize) -> Result<usize> {
        if index >= self.len() {
            return Err(Error::msg(format!(
                "aggregate argument {} requested, the row has {}",
                index + 1,
                self.len()
            )));
        }
        Ok(self.first + index)
    }
}

/// The call's argument types, looked up once per call site and kept in `fn_extra`.
///
/// # Safety
/// `fcinfo` must be the current call's, of a function that uses `fn_extra` only here.
unsafe fn argument_types(fcinfo: FunctionCallInfo) -> Result<*const Oid> {
    // SAFETY: the call's own flinfo.
    let flinfo = unsafe { (*fcinfo).flinfo };
    // SAFETY: as above.
    let cached = unsafe { (*flinfo).fn_extra } as *const Oid;
    if !cached.is_null() {
        return Ok(cached);
    }
    // SAFETY: as above.
    let nargs = unsafe { (*fcinfo).nargs }.max(0) as usize;
    let size = (nargs.max(1)) * std::mem::size_of::<Oid>();
    // SAFETY: fn_mcxt lives as long as flinfo.
    let types =
        guard(|| unsafe { pg_sys::MemoryContextAlloc((*flinfo).fn_mcxt, size) })? as *mut Oid;
    for i in 0..nargs {
        let n = i as i32;
        // SAFETY: inspects the call's expression; InvalidOid when unknown.
        let oid = guard(|| unsafe { pg_sys::get_fn_expr_argtype(flinfo, n) })?;
        // SAFETY: `types` has room for nargs OIDs.
        unsafe { types.add(i).write(oid) };
    }
    // SAFETY: our own function's cache slot.
    unsafe { (*flinfo).fn_extra = types as *mut c_void };
    Ok(types)
}

/// A state as the aggregate's memory context keeps it: tagged with its Rust type, so that
/// a support function handed another aggregate's state refuses it.
struct Slot<S> {
    tag: std::any::TypeId,
    state: S,
}

/// The tag of `S`'s slots.
fn tag_of<S: 'static>() -> std::any::TypeId {
    std::any::TypeId::of::<Slot<S>>()
}

extern "C" fn drop_slot<S: 'static>(arg: *mut c_void) {
    // SAFETY: registered once per slot with the Box's pointer; runs at the context's reset.
    let slot = unsafe { Box::from_raw(arg as *mut Slot<S>) };
    // A panic must not unwind into the memory context code (it would abort the server),
    // and an ERROR cannot be raised from a reset callback: a WARNING says what happened.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(slot))).is_err() {
        crate::elog::report(
            crate::elog::Level::Warning,
            "dropping an aggregate state panicked",
        );
    }
}

/// The aggregate's memory context, or an error outside an aggregate (a support function
/// called directly from SQL).
///
/// # Safety
/// `fcinfo` must be the current call's.
unsafe fn memory(fcinfo: FunctionCallInfo) -> Result<Memory> {
    let mut context: pg_sys::MemoryContext = std::ptr::null_mut();
    let out = &mut context as *mut pg_sys::MemoryContext;
    // SAFETY: a plain query of the call's context.
    let kind = guard(|| unsafe { pg_sys::AggCheckCallContext(fcinfo, out) })?;
    if kind == 0 || context.is_null() {
        return Err(Error::msg(
            "an aggregate support function was called outside an aggregate",
        ));
    }
    Ok(Memory { context })
}

/// Moves `state` into a slot owned by `memory`'s context; returns it as a Datum.
fn keep<S: 'static>(memory: &Memory, state: S) -> Result<Datum> {
    let slot = Box::into_raw(Box::new(Slot {
        tag: tag_of::<S>(),
        state,
    }));
    // SAFETY: the context is live; drop_slot takes the Box back once.
    if let Err(e) = unsafe { on_reset(memory.context, slot as *mut c_void, drop_slot::<S>) } {
        // SAFETY: not registered: still ours.
        drop(unsafe { Box::from_raw(slot) });
        return Err(e);
    }
    Ok(slot as Datum)
}

/// The state behind argument `index`, or None if it is NULL.
///
/// # Safety
/// `fcinfo` must be the current call's, inside an aggregate whose state type is
/// `internal` and whose states this crate made ([`keep`]).
unsafe fn state_arg<'a, S: 'static>(
    fcinfo: FunctionCallInfo,
    index: usize,
) -> Result<Option<&'a mut S>> {
    // SAFETY: the caller's promise: the call has at least index + 1 arguments.
    let arg = unsafe { *(*fcinfo).args.as_ptr().add(index) };
    if arg.isnull {
        return Ok(None);
    }
    let slot = arg.value as *mut Slot<S>;
    // SAFETY: a state of this aggregate family (the caller's promise); the tag check
    // catches another Rust aggregate's state handed over by a mixed-up declaration.
    unsafe {
        if (*slot).tag != tag_of::<S>() {
            return Err(Error::msg(format!(
                "aggregate state is not a {}: the aggregate's declaration mixes support functions",
                std::any::type_name::<S>()
            )));
        }
        Ok(Some(&mut (*slot).state))
    }
}

/// The support functions [`sql_aggregate!`](crate::sql_aggregate!) exports. Not for direct use.
#[doc(hidden)]
pub mod support {
    use super::*;

    /// # Safety
    /// `fcinfo` must be the call of the aggregate's transition function.
    pub unsafe fn step<S: Aggregate>(fcinfo: FunctionCallInfo) -> Result<Datum> {
        let _no_result_set = crate::srf::enter_call(std::ptr::null_mut());
        // SAFETY: forwarded: the current call, with the state first.
        unsafe {
            let memory = memory(fcinfo)?;
            let args = Args::new(fcinfo, 1)?;
            match state_arg::<S>(fcinfo, 0)? {
                Some(state) => {
                    state.step(&memory, &args)?;
                    Ok((*(*fcinfo).args.as_ptr()).value)
                }
                None => {
                    let mut state = S::init(&memory, &args)?;
                    state.step(&memory, &args)?;
                    keep(&memory, state)
                }
            }
        }
    }

    /// # Safety
    /// `fcinfo` must be the call of the aggregate's final function.
    pub unsafe fn finish<S: Aggregate>(fcinfo: FunctionCallInfo) -> Result<Datum> {
        // SAFETY: forwarded: the current call, state first.
        unsafe {
            memory(fcinfo)?;
            let Some(state) = state_arg::<S>(fcinfo, 0)? else {
                (*fcinfo).isnull = true;
                return Ok(0);
            };
            let out = state.finish()?;
            crate::fmgr::Call::result_of(fcinfo).ret(&out)
        }
    }

    /// # Safety
    /// `fcinfo` must be the call of the aggregate's combine function.
    pub unsafe fn combine<S: ParallelAggregate>(fcinfo: FunctionCallInfo) -> Result<Datum> {
        let _no_result_set = crate::srf::enter_call(std::ptr::null_mut());
        // SAFETY: forwarded: the current call, two states.
        unsafe {
            let memory = memory(fcinfo)?;
            let first = (*(*fcinfo).args.as_ptr()).value;
            match (state_arg::<S>(fcinfo, 0)?, state_arg::<S>(fcinfo, 1)?) {
                (None, None) => {
                    (*fcinfo).isnull = true;
                    Ok(0)
                }
                (Some(_), None) => Ok(first),
                // The second state belongs to another context: adopt a copy.
                (None, Some(theirs)) => {
                    let copy = theirs.duplicate(&memory)?;
                    keep(&memory, copy)
                }
                (Some(ours), Some(theirs)) => {
                    ours.combine(theirs, &memory)?;
                    Ok(first)
                }
            }
        }
    }

    /// # Safety
    /// `fcinfo` must be the call of the aggregate's serial function.
    pub unsafe fn serialize<S: ParallelAggregate>(fcinfo: FunctionCallInfo) -> Result<Datum> {
        let _no_result_set = crate::srf::enter_call(std::ptr::null_mut());
        // SAFETY: forwarded: the current call, state first (never NULL: STRICT).
        unsafe {
            memory(fcinfo)?;
            let Some(state) = state_arg::<S>(fcinfo, 0)? else {
                return Err(Error::msg("no aggregate state to serialize"));
            };
            let bytes = state.serialize()?;
            Ok(bytes.to_datum()?.unwrap_or(0))
        }
    }

    /// # Safety
    /// `fcinfo` must be the call of the aggregate's deserial function.
    pub unsafe fn deserialize<S: ParallelAggregate>(fcinfo: FunctionCallInfo) -> Result<Datum> {
        let _no_result_set = crate::srf::enter_call(std::ptr::null_mut());
        // SAFETY: forwarded: the current call, bytea first (never NULL: STRICT).
        unsafe {
            let memory = memory(fcinfo)?;
            let arg = *(*fcinfo).args.as_ptr();
            let bytes = <Vec<u8> as FromSql>::from_datum(arg.value, arg.isnull, pg_sys::BYTEAOID)?;
            let state = S::deserialize(&memory, &bytes)?;
            keep(&memory, state)
        }
    }
}

/// Declares a user-defined aggregate over an [`Aggregate`] (or, with `, parallel`, a
/// [`ParallelAggregate`]): exports its support functions `<name>_step`, `<name>_final`
/// (and `<name>_combine`, `<name>_serialize`, `<name>_deserialize`), and writes their and
/// the aggregate's declarations into the library (see [`sql`](crate::sql)), also available as
/// `name::DECLARATIONS`. The arguments are SQL text (any types, `VARIADIC "any"`); the
/// state is `internal`; the result type is the Rust `Output`'s. The support functions are
/// revoked from PUBLIC: only the aggregate's owner needs them.
///
/// ```no_run
/// # use bgworker::aggregate::{Aggregate, Args, Memory};
/// # struct Longest(usize);
/// # impl Aggregate for Longest {
/// #     type Output = i64;
/// #     fn init(_: &Memory, _: &Args) -> bgworker::Result<Self> { Ok(Longest(0)) }
/// #     fn step(&mut self, _: &Memory, args: &Args) -> bgworker::Result<()> {
/// #         self.0 = self.0.max(args.get::<Option<String>>(0)?.map_or(0, |s| s.len()));
/// #         Ok(())
/// #     }
/// #     fn finish(&mut self) -> bgworker::Result<i64> { Ok(self.0 as i64) }
/// # }
/// bgworker::sql_aggregate! {
///     #[sql(schema = "@extschema@", parallel_safe)]
///     aggregate longest("text"): Longest;
/// }
/// fn main() {
///     assert!(longest::DECLARATIONS[2].to_sql("", false).starts_with(
///         "CREATE AGGREGATE @extschema@.\"longest\"(text) (SFUNC = @extschema@.\"longest_step\""
///     ));
/// }
/// ```
#[macro_export]
macro_rules! sql_aggregate {
    ($(#[sql($($opts:tt)*)])? aggregate $name:ident ($args:literal) : $state:ty $(;)?) => {
        $crate::__sql_aggregate! { [$($($opts)*)?] $name $args $state
            [None]
            [step, final]
        }
    };
    ($(#[sql($($opts:tt)*)])? aggregate $name:ident ($args:literal) : $state:ty, parallel $(;)?) => {
        $crate::__sql_aggregate! { [$($($opts)*)?] $name $args $state
            [Some((
                concat!(stringify!($name), "_combine"),
                concat!(stringify!($name), "_serialize"),
                concat!(stringify!($name), "_deserialize"),
            ))]
            [step, final, combine, serialize, deserialize]
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sql_aggregate {
    ([$($opts:tt)*] $name:ident $args:literal $state:ty [$($parallel:tt)*] [$($part:ident),*]) => {
        #[allow(missing_docs, non_snake_case)]
        #[doc = concat!("The SQL declarations of aggregate `", stringify!($name), "`.")]
        pub mod $name {
            #[allow(unused_imports)]
            use super::*;
            const OPTIONS: $crate::sql::Options = $crate::__sql_options!($($opts)*);
            /// The support functions' `CREATE FUNCTION`s, then the `CREATE AGGREGATE`, for a
            /// library that creates its aggregates itself:
            ///
            /// ```text
            /// for d in name::DECLARATIONS { spi.execute(&d.to_sql(&library_path, true), &[])?; }
            /// ```
            pub const DECLARATIONS: &[$crate::sql::Declaration] = &[
                $( $crate::__sql_aggregate_part!(declare $part $name $args OPTIONS, $state), )*
                $crate::sql::Declaration::aggregate(
                    stringify!($name),
                    OPTIONS,
                    $args,
                    concat!(stringify!($name), "_step"),
                    concat!(stringify!($name), "_final"),
                    $($parallel)*,
                ),
            ];
        }
        $( $crate::__sql_aggregate_part!(export $part $name $args, $state); )*
        const _: () = {
            const D: $crate::sql::Declaration = $name::DECLARATIONS[$name::DECLARATIONS.len() - 1];
            const LEN: usize = D.record_len();
            #[used]
            #[export_name = concat!("bgworker_sql_", stringify!($name))]
            static RECORD: [u8; LEN] = D.record::<LEN>();
        };
    };
}

/// One support function of [`sql_aggregate!`]: its declaration, or its export.
#[doc(hidden)]
#[macro_export]
macro_rules! __sql_aggregate_part {
    (declare step $name:ident $args:literal $options:ident, $state:ty) => {
        $crate::sql::Declaration::support(
            concat!(stringify!($name), "_step"),
            $options.unnamed(),
            concat!("internal, ", $args),
            $crate::sql::TypeSpelling::named("internal"),
            false,
        )
    };
    (declare final $name:ident $args:literal $options:ident, $state:ty) => {
        $crate::sql::Declaration::support(
            concat!(stringify!($name), "_final"),
            $options.unnamed(),
            "internal",
            <<$state as $crate::aggregate::Aggregate>::Output as $crate::sql::SignatureType>::SQL,
            true,
        )
    };
    (declare combine $name:ident $args:literal $options:ident, $state:ty) => {
        $crate::sql::Declaration::support(
            concat!(stringify!($name), "_combine"),
            $options.unnamed(),
            "internal, internal",
            $crate::sql::TypeSpelling::named("internal"),
            false,
        )
    };
    (declare serialize $name:ident $args:literal $options:ident, $state:ty) => {
        $crate::sql::Declaration::support(
            concat!(stringify!($name), "_serialize"),
            $options.unnamed(),
            "internal",
            $crate::sql::TypeSpelling::named("bytea"),
            true,
        )
    };
    (declare deserialize $name:ident $args:literal $options:ident, $state:ty) => {
        $crate::sql::Declaration::support(
            concat!(stringify!($name), "_deserialize"),
            $options.unnamed(),
            "bytea, internal",
            $crate::sql::TypeSpelling::named("internal"),
            true,
        )
    };
    (export $part:ident $name:ident $args:literal, $state:ty) => {
        const _: () = {
            const D: $crate::sql::Declaration =
        $name::DECLARATIONS[$crate::__sql_aggregate_part!(index $part)];
            const LEN: usize = D.record_len();
            #[used]
            #[export_name = concat!("bgworker_sql_", stringify!($name), "_", stringify!($part))]
            static RECORD: [u8; LEN] = D.record::<LEN>();

            #[export_name = concat!("pg_finfo_", stringify!($name), "_", stringify!($part))]
            extern "C" fn finfo() -> *const $crate::pg_sys::Pg_finfo_record {
                &$crate::fmgr::FINFO_V1
            }

            #[export_name = concat!(stringify!($name), "_", stringify!($part))]
            extern "C" fn call(fcinfo: $crate::pg_sys::FunctionCallInfo) -> $crate::pg_sys::Datum {
                // SAFETY: PostgreSQL calls it as the support function the library declared
                // it as (its declaration record says so).
        let run = || unsafe { $crate::__sql_aggregate_part!(call $part fcinfo, $state) };
                // SAFETY: PostgreSQL calls it directly; the frame owns nothing.
                unsafe { $crate::entry::run_returning(run) }
            }
        };
    };
    (index step) => {
        0
    };
    (index final) => {
        1
    };
    (index combine) => {
        2
    };
    (index serialize) => {
        3
    };
    (index deserialize) => {
        4
    };
    (call step $fcinfo:ident, $state:ty) => {
        $crate::aggregate::support::step::<$state>($fcinfo)
    };
    (call final $fcinfo:ident, $state:ty) => {
        $crate::aggregate::support::finish::<$state>($fcinfo)
    };
    (call combine $fcinfo:ident, $state:ty) => {
        $crate::aggregate::support::combine::<$state>($fcinfo)
    };
    (call serialize $fcinfo:ident, $state:ty) => {
        $crate::aggregate::support::serialize::<$state>($fcinfo)
    };
    (call deserialize $fcinfo:ident, $state:ty) => {
        $crate::aggregate::support::deserialize::<$state>($fcinfo)
    };
}
