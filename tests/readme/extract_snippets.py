#!/usr/bin/python3
"""Extracts every ```cpp block of README.md into a C++ file of its own.

usage: extract_snippets.py README SOURCE_DIR OUT_DIR

Writes OUT_DIR/readme_L<line>.cpp per block (<line>: the line of the
block's opening fence) and OUT_DIR/blocks.cmake, which sets
`readme_blocks` to "L<line>:complete" or "L<line>:fragment" per block.

A block with an `int main(` is complete: it is compiled as it stands (and
run by the test). Any other block is a fragment, compiled as the body of a
function after a fixed prelude:

  - every public header of every module (SOURCE_DIR/*/include/actorbus/),
    then the fragment's own #include lines, hoisted to the top of the file;
  - readme_prelude.hpp (beside this script): `using namespace
    std::chrono_literals;` and the few example names the README leaves
    abstract, each documented there;
  - the function's parameter `actorbus::runtime::runtime& rt` and the local
    `caf::actor_system& sys = rt.system()`.

The fragment's function is linked but never called: a fragment must compile
and link, not run. `#line` directives map every line back to README.md, so a
compiler error names the README line. Blocks in other languages (sh, cmake,
ini) are not C++ and are not extracted; there is no way to skip a C++ block.
"""

import pathlib
import re
import sys

FENCE_OPEN = re.compile(r"^(\s*)```cpp\s*$")
MAIN = re.compile(r"^\s*int\s+main\s*\(")
INCLUDE = re.compile(r"^\s*#\s*include\b")


def blocks(lines):
    """Yields (fence line number, first code line number, code lines)."""
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent = m.group(1)
        close = re.compile("^" + re.escape(indent) + r"```\s*$")
        start = i + 1
        j = start
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if j == len(lines):
            sys.exit(f"README.md:{i + 1}: ```cpp block is never closed")
        code = [l[len(indent):] if l.startswith(indent) else l.lstrip()
                for l in lines[start:j]]
        yield i + 1, start + 1, code
        i = j + 1


def public_headers(source_dir):
    out = []
    for inc in sorted(source_dir.glob("*/include/actorbus")):
        for h in sorted(inc.rglob("*.hpp")):
            rel = h.relative_to(inc.parent)
            if "detail" not in rel.parts:
                out.append(rel.as_posix())
    return out


def main():
    readme, source_dir, out_dir = (pathlib.Path(a) for a in sys.argv[1:4])
    readme = readme.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("readme_L*.cpp"):
        old.unlink()
    lines = readme.read_text(encoding="utf-8").split("\n")
    headers = public_headers(source_dir)
    entries = []
    for fence, first, code in blocks(lines):
        name = f"L{fence}"
        path = out_dir / f"readme_{name}.cpp"
        text = [f"// README.md line {fence}, extracted by "
                "tests/readme/extract_snippets.py."]
        if any(MAIN.match(l) for l in code):
            kind = "complete"
            text.append(f'#line {first} "{readme}"')
            text.extend(code)
        else:
            kind = "fragment"
            text.extend(f"#include <{h}>" for h in headers)
            for n, l in enumerate(code):
                if INCLUDE.match(l):
                    text.append(f'#line {first + n} "{readme}"')
                    text.append(l)
            text.append('#include "readme_prelude.hpp"')
            text.append(f"void readme_fragment_{name}(actorbus::runtime::runtime& rt) {{")
            text.append("  [[maybe_unused]] caf::actor_system& sys = rt.system();")
            text.append(f'#line {first} "{readme}"')
            text.extend("" if INCLUDE.match(l) else l for l in code)
            text.append("}")
            text.append("int main() {")
            text.append("  return 0;")
            text.append("}")
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
        entries.append(f"{name}:{kind}")
    (out_dir / "blocks.cmake").write_text(
        f'set(readme_blocks "{";".join(entries)}")\n', encoding="utf-8")


if __name__ == "__main__":
    main()
