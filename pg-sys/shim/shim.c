/*
 * See shim.h. Compiled by pg-sys's build.rs with the server's include directory.
 */
#include "postgres.h"

#include <setjmp.h>

#include "libpq/pqmq.h"
#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/procsignal.h"
#include "storage/shm_mq.h"
#include "port/atomics.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "access/parallel.h"
#include "access/tupdesc.h"
#include "utils/memutils.h"

#if PG_VERSION_NUM >= 160000
/* The varlena macros left postgres.h for varatt.h in 16. */
#include "varatt.h"
#endif

#include "lib/stringinfo.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "shim.h"

const Pg_magic_struct *
pgsys_module_magic(void)
{
#if PG_VERSION_NUM >= 180000
	static const Pg_magic_struct magic = PG_MODULE_MAGIC_DATA();
#else
	static const Pg_magic_struct magic = PG_MODULE_MAGIC_DATA;
#endif
	return &magic;
}

ErrorData *
pgsys_try(pgsys_callback fn, void *arg)
{
	/* volatile: these are read after siglongjmp returns to this frame */
	sigjmp_buf *volatile saved_stack = PG_exception_stack;
	ErrorContextCallback *volatile saved_context = error_context_stack;
	volatile MemoryContext saved_memory = CurrentMemoryContext;
	volatile uint32 saved_holdoff = InterruptHoldoffCount;
	volatile uint32 saved_cancel_holdoff = QueryCancelHoldoffCount;
	volatile uint32 saved_crit_section = CritSectionCount;
	sigjmp_buf	local;
	ErrorData  *error;

	if (sigsetjmp(local, 0) == 0)
	{
		PG_exception_stack = &local;
		fn(arg);
		PG_exception_stack = saved_stack;
		error_context_stack = saved_context;
		return NULL;
	}

	PG_exception_stack = saved_stack;
	error_context_stack = saved_context;

	/*
	 * errfinish zeroed the holdoff counters, as the top-level error recovery it expects
	 * starts from nothing held. Our caller continues instead, still holding what it held on
	 * entry (an LWLock holds interrupts): give it back its own counts. Whatever the failed
	 * call took internally is released by the (sub)transaction abort that must follow, and
	 * LWLockReleaseAll balances its own holdoffs.
	 */
	InterruptHoldoffCount = saved_holdoff;
	QueryCancelHoldoffCount = saved_cancel_holdoff;
	CritSectionCount = saved_crit_section;

	/*
	 * What every error recovery of PostgreSQL's does first, in or out of a transaction
	 * (AbortTransaction, and the auxiliary processes' handlers outside one): release the
	 * LWLocks, condition variable and buffer waits the failed call left behind. Outside a
	 * transaction nothing else would, and other processes would wait on them forever; inside
	 * one, the caller's own code would otherwise run into them before the rollback.
	 * LWLockReleaseAll balances its own holdoffs.
	 */
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	pgstat_report_wait_end();
	UnlockBuffers();

	/*
	 * errfinish left us in ErrorContext. Copy the error into TopMemoryContext, which lives
	 * whatever the failed call deleted (a commit deletes the transaction's contexts), then
	 * return to the caller's context.
	 */
	MemoryContextSwitchTo(TopMemoryContext);
	error = CopyErrorData();
	FlushErrorState();
	MemoryContextSwitchTo(saved_memory);
	return error;
}

void
pgsys_resume_interrupts(void)
{
	if (InterruptHoldoffCount > 0)
		InterruptHoldoffCount--;
}

void
pgsys_report(int elevel, int sqlerrcode, const char *message,
			 const char *detail, const char *hint)
{
	ereport(elevel,
			(errcode(sqlerrcode),
			 errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

void
pgsys_raise(int elevel, int sqlerrcode, const char *message,
			const char *detail, const char *hint, const char *context,
			pgsys_callback release, void *release_arg)
{
	if (errstart(elevel, NULL))
	{
		errcode(sqlerrcode);
		errmsg_internal("%s", message);
		if (detail)
			errdetail_internal("%s", detail);
		if (hint)
			errhint("%s", hint);
		if (context)
		{
			set_errcontext_domain(NULL);
			errcontext_msg("%s", context);
		}
		release(release_arg);
		errfinish(__FILE__, __LINE__, "pgsys_raise");
	}
	else
		release(release_arg);
}

void
pgsys_pqsignal(int signo, void (*handler) (int))
{
	pqsignal(signo, handler);
}

LWLock *
pgsys_addin_shmem_init_lock(void)
{
	return AddinShmemInitLock;
}

Size
pgsys_maxalign(Size len)
{
	return MAXALIGN(len);
}

void
pgsys_check_for_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
}

int
pgsys_make_sqlstate(const char *c)
{
	return MAKE_SQLSTATE(c[0], c[1], c[2], c[3], c[4]);
}

Size
pgsys_varsize_any_exhdr(const void *ptr)
{
	return VARSIZE_ANY_EXHDR(ptr);
}

char *
pgsys_vardata_any(const void *ptr)
{
	return VARDATA_ANY(ptr);
}

void
pgsys_set_varsize(void *ptr, Size len)
{
	SET_VARSIZE(ptr, len);
}

Size
pgsys_varhdrsz(void)
{
	return VARHDRSZ;
}

void
pgsys_atomic_init_u64(pg_atomic_uint64 *ptr, uint64 val)
{
	pg_atomic_init_u64(ptr, val);
}

uint64
pgsys_atomic_read_u64(volatile pg_atomic_uint64 *ptr)
{
	return pg_atomic_read_u64(ptr);
}

uint64
pgsys_atomic_fetch_add_u64(volatile pg_atomic_uint64 *ptr, int64 add)
{
	return pg_atomic_fetch_add_u64(ptr, add);
}

void
pgsys_atomic_write_u64(volatile pg_atomic_uint64 *ptr, uint64 val)
{
	pg_atomic_write_u64(ptr, val);
}

Form_pg_attribute
pgsys_tupdesc_attr(TupleDesc desc, int i)
{
	return TupleDescAttr(desc, i);
}

/*
 * libpq/libpq.h's PQcommMethods, declared here without that header (it needs GSSAPI's
 * headers on builds configured with GSSAPI); identical in PostgreSQL 14 to 18.
 */
typedef struct PgsysCommMethods
{
	void		(*comm_reset) (void);
	int			(*flush) (void);
	int			(*flush_if_writable) (void);
	bool		(*is_send_pending) (void);
	int			(*putmessage) (char msgtype, const char *s, size_t len);
	void		(*putmessage_noblock) (char msgtype, const char *s, size_t len);
} PgsysCommMethods;

extern PGDLLIMPORT const PgsysCommMethods *PqCommMethods;

static PgsysCommMethods pgsys_queue_methods;

/* The queue the output goes to; NULL once its segment is detached. */
static shm_mq_handle *pgsys_out_queue;
/* A message is part-sent: its send waits for room in the queue. */
static bool pgsys_out_busy;
/* The queue holds part of a message that will never be finished. */
static bool pgsys_out_broken;
/* The next command tag publishes the result before it (pgsys_publish_next_tag). */
static bool pgsys_out_publish_tag;

#if PG_VERSION_NUM >= 170000
#define PGSYS_WAIT_PUT_MESSAGE WAIT_EVENT_MESSAGE_QUEUE_PUT_MESSAGE
#else
#define PGSYS_WAIT_PUT_MESSAGE WAIT_EVENT_MQ_PUT_MESSAGE
#endif

static void
pgsys_forget_out_queue(dsm_segment *seg, Datum arg)
{
	pgsys_out_queue = NULL;
}

/*
 * PqCommMethods.putmessage: sends one protocol message to the queue, waiting for room.
 * While it waits, interrupts are processed but for a cancel, which waits until the message
 * is out, and parallel workers' messages, which wait for the next interrupt check: pqmq's
 * check here could report one from inside the send, and its answer to that (detaching the
 * queue it is still sending to) crashes. A FATAL's own report is dropped (the process ends
 * and the receiver sees it detach).
 */
static int
pgsys_put_message(char msgtype, const char *s, size_t len)
{
	shm_mq_iovec iov[2];
	shm_mq_result result;

	if (pgsys_out_busy || pgsys_out_broken)
	{
		pgsys_out_broken = true;
		return EOF;
	}
	/* The segment is gone (late messages of a process that is ending): as pqmq, drop it. */
	if (pgsys_out_queue == NULL)
		return 0;
	iov[0].data = &msgtype;
	iov[0].len = 1;
	iov[1].data = s;
	iov[1].len = len;
	pgsys_out_busy = true;
	for (;;)
	{
#if PG_VERSION_NUM >= 150000
		/*
		 * A result (row description, data rows, command tag) is not published message by
		 * message (pqmq forces every message out and sets the receiver's latch: a cache-line
		 * exchange and a wakeup each, and a reader woken for the row description of a short
		 * result waits again for its rows): the queue publishes it when a quarter of its
		 * ring is pending, when the next other message goes out (ReadyForQuery, a NOTICE,
		 * an ERROR), as a backend's output buffer goes to its client when full or at those
		 * messages, and at the tag of a statement that is not its string's last.
		 */
		result = shm_mq_sendv(pgsys_out_queue, iov, 2, true,
							  (msgtype != 'T' && msgtype != 'D' && msgtype != 'C') ||
							  (msgtype == 'C' && pgsys_out_publish_tag));
#else
		result = shm_mq_sendv(pgsys_out_queue, iov, 2, true);
#endif
		if (result != SHM_MQ_WOULD_BLOCK)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, 0,
						 PGSYS_WAIT_PUT_MESSAGE);
		ResetLatch(MyLatch);
		if (InterruptPending)
		{
			/*
			 * Everything but a cancel (held, as a backend's while it writes to its client)
			 * and parallel workers' messages (left pending for the next check): an ERROR
			 * here leaves the message part-sent and the output broken.
			 */
			bool		parallel = ParallelMessagePending;

			ParallelMessagePending = false;
			QueryCancelHoldoffCount++;
			PG_TRY();
			{
				CHECK_FOR_INTERRUPTS();
			}
			PG_FINALLY();
			{
				if (QueryCancelHoldoffCount > 0)
					QueryCancelHoldoffCount--;
				if (parallel)
				{
					ParallelMessagePending = true;
					InterruptPending = true;
				}
			}
			PG_END_TRY();
		}
	}
	pgsys_out_busy = false;
	return result == SHM_MQ_SUCCESS ? 0 : EOF;
}

void
pgsys_send_output_to(dsm_segment *seg, shm_mq_handle *queue)
{
	pq_redirect_to_shm_mq(seg, queue);
	pgsys_out_queue = queue;
	pgsys_out_busy = false;
	pgsys_out_broken = false;
	on_dsm_detach(seg, pgsys_forget_out_queue, (Datum) 0);
	pgsys_queue_methods = *PqCommMethods;
	pgsys_queue_methods.putmessage = pgsys_put_message;
	PqCommMethods = &pgsys_queue_methods;
}

void
pgsys_publish_next_tag(bool publish)
{
	pgsys_out_publish_tag = publish;
}

void
pgsys_stop_output(void)
{
	pgsys_out_queue = NULL;
}

bool
pgsys_output_broken(void)
{
	return pgsys_out_busy || pgsys_out_broken;
}

char *
pgsys_session_settings(int *len)
{
	StringInfoData buf;
	struct config_generic **vars;
	int			count;

#if PG_VERSION_NUM >= 160000
	vars = get_guc_variables(&count);
#else
	vars = get_guc_variables();
	count = GetNumConfigOptions();
#endif
	initStringInfo(&buf);
	for (int i = 0; i < count; i++)
	{
		struct config_generic *conf = vars[i];
		const char *value;

		if (conf->source != PGC_S_CLIENT && conf->source != PGC_S_SESSION)
			continue;
		/* Only what SET can change (a client's startup may set more). */
		if (conf->context != PGC_USERSET && conf->context != PGC_SUSET)
			continue;
		if (conf->flags & GUC_NO_SHOW_ALL)
			continue;
		value = GetConfigOptionByName(conf->name, NULL, true);
		if (value == NULL)
			continue;
		appendBinaryStringInfo(&buf, conf->name, strlen(conf->name) + 1);
		appendBinaryStringInfo(&buf, value, strlen(value) + 1);
		appendStringInfo(&buf, "%d", (int) conf->scontext);
		appendStringInfoChar(&buf, '\0');
#if PG_VERSION_NUM >= 150000
		appendStringInfo(&buf, "%u", conf->srole);
#else
		appendStringInfoChar(&buf, '0');
#endif
		appendStringInfoChar(&buf, '\0');
	}
	*len = buf.len;
	return buf.data;
}
