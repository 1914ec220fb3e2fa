#!/usr/bin/env python3
"""Lists public items of the bgworker crate whose documentation has no example.

Module-level items (types, traits, functions, constants, macros, modules) need a code block
in their own doc comment; a module's is its `//!` header. Methods, associated constants and
variants are covered by an example on the type or trait they belong to. Exits non-zero when
something is missing, so `make lint` enforces it.
"""
import pathlib
import re
import sys

ITEM = re.compile(r'^(\s*)pub (?:const )?(?:unsafe )?(fn|struct|enum|trait|const|static|type) (\w+)')
MACRO = re.compile(r'^macro_rules! (\w+)')
IMPL = re.compile(r'^impl(?:<[^>]*>)? (?:[\w:<>, ]+ for )?(\w+)')
MOD = re.compile(r'^pub mod (\w+);')

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bgworker/src")
missing = []
for path in sorted(root.rglob("*.rs")):
    lines = path.read_text().splitlines()
    header = [l for l in lines if l.startswith("//!")]
    if path.name not in ("lib.rs",) and not any("```" in l for l in header):
        missing.append(f"{path}: module documentation has no example")
    typed = {}
    container = False
    doc = []
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("///"):
            doc.append(s)
            continue
        if s.startswith("#["):
            if "doc(hidden)" in s:
                doc.append("```hidden```")
            continue
        example = any("```" in d for d in doc)
        if m := IMPL.match(line):
            container = typed.get(m.group(1), False)
        elif m := ITEM.match(line):
            indent, kind, name = m.groups()
            if not indent:
                typed[name] = example
                if kind in ("struct", "enum", "trait"):
                    container = example
                if not example:
                    missing.append(f"{path}:{i + 1}: {kind} {name}")
            elif not (example or container):
                missing.append(f"{path}:{i + 1}: {kind} {name} (and its type has no example)")
        elif m := MACRO.match(line):
            exported = any("macro_export" in l for l in lines[max(0, i - 3):i])
            # An internal macro's items land in types whose own docs carry the examples.
            container = not exported
            if exported and not example:
                missing.append(f"{path}:{i + 1}: macro {m.group(1)}")
        doc = []

for m in missing:
    print(m)
if missing:
    print(f"{len(missing)} public items without an example", file=sys.stderr)
    sys.exit(1)
