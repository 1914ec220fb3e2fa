# PGXS-style building blocks for PostgreSQL libraries written with bgworker: one copy, used
# by bgworker's own Makefile and by the starter template (templates/worker). Include it:
#
#   BGWORKER_DIR ?= path/to/bgworker     # the directory of this file
#   include $(BGWORKER_DIR)/pgxs.mk
#
# Honours PG_CONFIG= (default: pg_config on PATH) and DESTDIR=, like PGXS. Provides:
#
#   $(BGW_PKGLIBDIR), $(BGW_EXTDIR)          where libraries and extension files go
#   $(call bgw_install_lib,BUILT,NAME)       install BUILT as $(DESTDIR)$(BGW_PKGLIBDIR)/NAME.so:
#                                            a new file renamed over the old one, never an
#                                            overwrite in place (backends that mapped the old
#                                            library would crash)
#   $(call bgw_install_data,FILES)           install FILES into $(DESTDIR)$(BGW_EXTDIR)
#   $(call bgw_uninstall,LIBS,FILES)         remove what the two above installed
#   $(call bgw_version,CONTROL)              the control file's default_version
#   $(call bgw_sql,BUILT,SOURCE,SCRIPT)      write SCRIPT: SOURCE (the hand-written parts:
#                                            tables, grants, comments) with its line
#                                            `-- bgworker: declarations` replaced by the
#                                            CREATE statements the library carries (see the
#                                            bgworker::sql module)
#   $(call bgw_sql_check,BUILT,SOURCE,SCRIPT) fail if SCRIPT is not what bgw_sql would write
#
# These are recipe fragments: use them as whole recipe lines, `$(call ...)`.

# Given on the command line or in the environment, PG_CONFIG also reaches cargo (pg-sys
# builds against it); otherwise both use pg_config on PATH.
ifdef PG_CONFIG
export PG_CONFIG
endif
PG_CONFIG ?= pg_config
BGW_PKGLIBDIR = $(shell $(PG_CONFIG) --pkglibdir)
BGW_EXTDIR = $(shell $(PG_CONFIG) --sharedir)/extension

bgw_install_lib = install -d '$(DESTDIR)$(BGW_PKGLIBDIR)' && \
	tmp='$(DESTDIR)$(BGW_PKGLIBDIR)/.$(2).so.new.'$$$$ && \
	install -m 755 '$(1)' "$$tmp" && \
	mv -f "$$tmp" '$(DESTDIR)$(BGW_PKGLIBDIR)/$(2).so' && \
	echo "installed $(DESTDIR)$(BGW_PKGLIBDIR)/$(2).so"

bgw_install_data = install -d '$(DESTDIR)$(BGW_EXTDIR)' && \
	for f in $(1); do \
		install -m 644 "$$f" '$(DESTDIR)$(BGW_EXTDIR)/' && \
		echo "installed $(DESTDIR)$(BGW_EXTDIR)/$$(basename $$f)" || exit 1; \
	done

bgw_uninstall = for l in $(1); do rm -f '$(DESTDIR)$(BGW_PKGLIBDIR)'/$$l.so; done; \
	for f in $(2); do rm -f '$(DESTDIR)$(BGW_EXTDIR)'/$$(basename $$f); done

bgw_version = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(1))

# The library's declaration records, one statement a line, in a stable order: functions
# before the aggregates that use them, each group by name.
bgw_declarations = tr '\0' '\n' < '$(1)' | sed -n 's/^BGWSQL1|//p' | LC_ALL=C sort | cut -d'|' -f3-

# SOURCE with the marker line replaced, to stdout.
bgw_sql_text = test -f '$(1)' || { echo "$(1) is missing: build it first" >&2; exit 1; }; \
	decl=$$(mktemp) && $(call bgw_declarations,$(1)) > "$$decl" && \
	awk -v decl="$$decl" '$$0 == "-- bgworker: declarations" { \
		while ((getline line < decl) > 0) print line; found = 1; next } { print } \
		END { if (!found) { print "$(2): no line \"-- bgworker: declarations\"" > "/dev/stderr"; exit 1 } }' \
		'$(2)'; status=$$?; rm -f "$$decl"; exit $$status

bgw_sql = ( $(call bgw_sql_text,$(1),$(2)) ) > '$(3).new' || { rm -f '$(3).new'; exit 1; }; \
	mv -f '$(3).new' '$(3)' && echo "wrote $(3)"

bgw_sql_check = ( $(call bgw_sql_text,$(1),$(2)) ) | diff -u '$(3)' - || \
	{ echo "$(3) differs from the declarations in $(1): run \`make sql\` and commit it" >&2; exit 1; }
