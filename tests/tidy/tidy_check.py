#!/usr/bin/python3
"""clang-tidy as a test: exits 1 on any finding in the files it covers.

Runs clang-tidy-14 with the project's .clang-tidy over
  * every public header (one generated TU that includes them all), and
  * the library sources listed in SOURCES below,
using the build's compile_commands.json, then runs clang-query-14 over the
same sources for the one naming rule clang-tidy cannot express: members of
`impl` structs end in `_` (CONTRIBUTING.md, "Naming"; clang-tidy sees them as
public members, like a config struct's fields).

Why a subset: clang-tidy costs 10-40 s of CPU per source file here (CAF's
headers), about 15 minutes for every file, which does not fit CI's budget on
2 cores. The headers TU checks every public header in about 10 s.
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys

# Library sources checked. Add a file here when it is clean (and its module's
# owner has landed their issue 14 work on it); see PENDING.
SOURCES = [
    "runtime/src/backoff.cpp",
    "runtime/src/call.cpp",
    "runtime/src/config.cpp",
    "runtime/src/error.cpp",
    "runtime/src/log.cpp",
    "runtime/src/registry.cpp",
    "runtime/src/runtime.cpp",
    "runtime/src/signals.cpp",
]

# Files not covered yet because they have findings that their owners are
# fixing in the same round of work (issue 14); each says what it has.
# Move a file to SOURCES once it is clean.
PENDING = {
    "actors/src, bus/src": "not checked yet: being split and renamed for issue 14",
    "ipc/src/{bridge,channel,process_pool,shared_array,shared_buffer}.cpp":
        "impl struct members without '_' (clang-query finds 60)",
    "ipc/src (other files)": "not checked yet",
    "queue/src/{client,worker}.cpp": "impl struct members without '_' (53)",
    "queue/src/redis.cpp": "not checked yet",
}

IMPL_MEMBER_MATCHER = (
    'fieldDecl(hasParent(cxxRecordDecl(hasName("impl"))), '
    'unless(matchesName("_$")), unless(isExpansionInSystemHeader()))'
    '.bind("impl_member")'
)

FINDING = re.compile(r"^(/[^:]+):(\d+):(\d+): (warning|error): (.*)$")
QUERY_HIT = re.compile(r'^(/[^:]+):(\d+):(\d+): note: "impl_member" binds here$')


def run(cmd):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    return proc.returncode, proc.stdout


def tidy(args, tu):
    code, out = run([args.clang_tidy, "-p", args.build, "--quiet",
                     f"--config-file={os.path.join(args.source, '.clang-tidy')}", tu])
    found = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = FINDING.match(line)
        if m:
            # The finding and the source line under it.
            found.append("\n".join(lines[i:i + 3]))
    if code != 0 and not found:
        found.append(f"{tu}: clang-tidy exited with {code}:\n{out}")
    return found


def impl_members(args, files):
    code, out = run([args.clang_query, "-p", args.build,
                     "-c", "set output diag", "-c", "set bind-root false",
                     "-c", f"match {IMPL_MEMBER_MATCHER}", *files])
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = QUERY_HIT.match(line)
        if m:
            found.append(f"{m.group(1)}:{m.group(2)}:{m.group(3)}: member of an impl "
                         f"struct does not end in '_':\n" + "\n".join(lines[i + 1:i + 2]))
    if code != 0:
        found.append(f"clang-query exited with {code}:\n{out}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clang-tidy", required=True)
    parser.add_argument("--clang-query", required=True)
    parser.add_argument("--source", required=True, help="the project's source dir")
    parser.add_argument("--build", required=True, help="dir with compile_commands.json")
    parser.add_argument("--headers-tu", required=True, help="TU that includes every public header")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    if not os.path.exists(os.path.join(args.build, "compile_commands.json")):
        print(f"tidy_check: no compile_commands.json in {args.build}")
        return 1
    sources = [os.path.join(args.source, f) for f in SOURCES]
    missing = [f for f in sources if not os.path.exists(f)]
    if missing:
        print("tidy_check: listed sources that do not exist (update SOURCES):")
        print("\n".join(missing))
        return 1

    findings = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for found in pool.map(lambda tu: tidy(args, tu), [args.headers_tu, *sources]):
            findings.extend(found)
    findings.extend(impl_members(args, sources))
    # A header's finding is reported once per TU that includes it.
    findings = list(dict.fromkeys(findings))

    for finding in findings:
        print(finding)
    for path, reason in PENDING.items():
        print(f"tidy_check: not covered yet: {path}: {reason}")
    print(f"tidy_check: {len(sources)} sources and the public headers, "
          f"{len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
