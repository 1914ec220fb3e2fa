/*
 * The C side of pg-sys: what bindgen cannot bind (macros, static inline functions) and the
 * error boundary. Every function here is a thin, policy-free wrapper, but for the output
 * method pgsys_send_output_to installs, which must be C (see there).
 */
#ifndef PGSYS_SHIM_H
#define PGSYS_SHIM_H

#include "postgres.h"
#include "fmgr.h"
#include "storage/lwlock.h"
#include "storage/dsm.h"
#include "storage/shm_mq.h"

/* The module magic block of the major being built (what PG_MODULE_MAGIC would return). */
extern const Pg_magic_struct *pgsys_module_magic(void);

/*
 * Calls fn(arg) with a sigsetjmp boundary around it. Returns NULL when fn returned normally.
 * When fn raised an ERROR, restores PG_exception_stack, error_context_stack,
 * CurrentMemoryContext and the interrupt/critical-section holdoff counts as they were on
 * entry, releases every LWLock, condition variable sleep and buffer pin wait of the process
 * (as PostgreSQL's error recovery does), and returns a copy of the error (allocated in
 * TopMemoryContext; free it with FreeErrorData) after flushing the error state.
 */
typedef void (*pgsys_callback) (void *arg);
extern ErrorData *pgsys_try(pgsys_callback fn, void *arg);

/* RESUME_INTERRUPTS() that never takes the count below zero. */
extern void pgsys_resume_interrupts(void);

/*
 * ereport(elevel, ...) with the message, detail and hint passed as "%s" arguments, so that
 * user text is never read as a format string. detail and hint may be NULL.
 * Does not return when elevel >= ERROR.
 */
extern void pgsys_report(int elevel, int sqlerrcode, const char *message,
						 const char *detail, const char *hint);

/*
 * Raises a report at elevel (ERROR and above do not return) with the given texts as "%s"
 * arguments. release(release_arg) is called once the texts have been copied into the error
 * state and before the report is emitted, so the caller's copies can be freed even though
 * this function never returns to it. detail, hint and context may be NULL.
 */
extern void pgsys_raise(int elevel, int sqlerrcode, const char *message,
						const char *detail, const char *hint, const char *context,
						pgsys_callback release, void *release_arg);

/* pqsignal(), a macro for pqsignal_be from 18 on. */
extern void pgsys_pqsignal(int signo, void (*handler) (int));

/* AddinShmemInitLock, a macro indexing MainLWLockArray. */
extern LWLock *pgsys_addin_shmem_init_lock(void);

/* MAXALIGN() */
extern Size pgsys_maxalign(Size len);

/* CHECK_FOR_INTERRUPTS() */
extern void pgsys_check_for_interrupts(void);

/* The value of the SQLSTATE as PostgreSQL packs it (MAKE_SQLSTATE). */
extern int pgsys_make_sqlstate(const char *five_chars);

/* Varlena helpers (macros in the headers). */
extern Size pgsys_varsize_any_exhdr(const void *ptr);
extern char *pgsys_vardata_any(const void *ptr);
extern void pgsys_set_varsize(void *ptr, Size len);
extern Size pgsys_varhdrsz(void);

/* Atomics (static inline in port/atomics.h). */
extern void pgsys_atomic_init_u64(pg_atomic_uint64 *ptr, uint64 val);
extern uint64 pgsys_atomic_read_u64(volatile pg_atomic_uint64 *ptr);
extern uint64 pgsys_atomic_fetch_add_u64(volatile pg_atomic_uint64 *ptr, int64 add);
extern void pgsys_atomic_write_u64(volatile pg_atomic_uint64 *ptr, uint64 val);

/*
 * pq_redirect_to_shm_mq(seg, queue), with pqmq's putmessage replaced until the segment
 * detaches (C, because it runs inside PostgreSQL's output path, where an interrupt check may
 * longjmp). Each protocol message is sent whole or not at all: while a send waits for room,
 * interrupts are processed but for a cancel (held until the message is out) and parallel
 * workers' messages (left for the next check: pqmq's interrupt check there may report one,
 * and its answer to that, detaching the queue it is still sending to, crashes the process).
 * From PostgreSQL 15, a statement's result (row description, data rows, command tag) is
 * published a quarter of the queue at a time instead of message by message (every other
 * message publishes it, in order, and so does a tag pgsys_publish_next_tag asks for).
 */
extern void pgsys_send_output_to(dsm_segment *seg, shm_mq_handle *queue);

/*
 * Whether the next command tag goes out at once, with the result before it: for a
 * statement that is not the last of its string, whose result must not wait for the
 * statements after it.
 */
extern void pgsys_publish_next_tag(bool publish);

/* Output goes nowhere from now on (its queue handle is about to be detached). */
extern void pgsys_stop_output(void);

/*
 * Whether the output queue holds part of a message that will never be finished (an ERROR
 * while it was sent): nothing more can go to that queue, whose receiver must be told by
 * detaching it.
 */
extern bool pgsys_output_broken(void);

/*
 * The settings this session set itself (sources client and session, as pg_settings shows
 * them) that SET may change, as "name\0value\0context\0role\0" in *len bytes, palloc'd
 * in the current context: the context they were set in (a GucContext number) and the role
 * that set them (0 before PostgreSQL 15), so that a worker sets them with the same rights
 * (as a parallel worker does). The settings that pg_settings does not show
 * (GUC_NO_SHOW_ALL) are left out.
 */
extern char *pgsys_session_settings(int *len);

#endif							/* PGSYS_SHIM_H */

/* TupleDescAttr(): the attribute array moved behind compact attributes in 18. */
extern Form_pg_attribute pgsys_tupdesc_attr(TupleDesc desc, int i);

