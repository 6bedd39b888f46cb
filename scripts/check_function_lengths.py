#!/usr/bin/env python3
"""Lists the functions longer than a limit (60 lines by default) in the C++ and Python sources.

    scripts/check_function_lengths.py [--limit N] [--root DIR] [FOLDER ...]

A function's length runs from its signature's first line to its closing brace (C++) or its last
line (Python); a Python docstring does not count: it is the function's reference, not its code.
C++ is read without a parser: comments, strings and preprocessor lines are blanked, then a brace
opens a function when what stands before it has a parameter list and is no control statement,
namespace, class or initializer. Exit 0 when none is longer; 1 with one line per function.
Run by the test suite (tests/python/test_function_lengths.py).
"""
import argparse
import ast
import re
import sys
from pathlib import Path

FOLDERS = ["src", "tools", "python/torchship"]
CONTROL = re.compile(r"\b(if|for|while|switch|catch|do|else|try)\b\s*(\(|$)")
SCOPE = re.compile(r"^\s*(template\s*<[^{]*>\s*)?(namespace|class|struct|enum|union|extern)\b")
PREPROCESSOR = re.compile(r"(?m)^[ \t]*#(?:.*\\\n)*.*$")


def blank(text: str) -> str:
    """`text` with every character but newlines replaced by a space."""
    return re.sub(r"[^\n]", " ", text)


def without_comments_and_strings(text: str) -> str:
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
        elif (raw := re.match(r'R"([^(\s]*)\(', text[i:i + 20])):
            end = text.find(")" + raw.group(1) + '"', i) + len(raw.group(1)) + 2
        elif text[i] in "\"'":
            end = i + 1
            while end < n and text[end] != text[i]:
                end += 2 if text[end] == "\\" else 1
            end += 1
        else:
            out.append(text[i])
            i += 1
            continue
        out.append(blank(text[i:end]))
        i = end
    return "".join(out)


def cpp_functions(path: Path):
    """(length, first line, name) of each function defined in a C++ file."""
    text = without_comments_and_strings(path.read_text())
    text = PREPROCESSOR.sub(lambda m: blank(m.group(0)), text)
    opened, found, statement_start = [], [], 0  # opened: (is_function, first line, name)
    for i, c in enumerate(text):
        if c == ";":
            statement_start = i + 1
        elif c == "{":
            head = text[statement_start:i]
            last_line = head.strip().split("\n")[-1]
            is_function = (not any(f for f, _, _ in opened) and ")" in head
                           and not SCOPE.search(head) and not CONTROL.search(last_line)
                           and "=" not in head.split("(")[0])
            names = re.findall(r"([~\w:]+)\s*\(", head)
            first = text.count("\n", 0, i) + 1 - head.strip().count("\n")
            opened.append((is_function, first, names[0] if names else "?"))
            statement_start = i + 1
        elif c == "}":
            is_function, first, name = opened.pop()
            if is_function:
                found.append((text.count("\n", 0, i) + 2 - first, first, name))
            statement_start = i + 1
    return found


def python_functions(path: Path):
    """(length without the docstring, first line, name) of each function in a Python file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                length -= first.end_lineno - first.lineno + 1
            found.append((length, node.lineno, node.name))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("folders", nargs="*", default=FOLDERS)
    args = parser.parse_args()
    long_ones, read = [], 0
    for folder in args.folders:
        for path in sorted((args.root / folder).rglob("*")):
            reader = {".cpp": cpp_functions, ".h": cpp_functions, ".py": python_functions}.get(path.suffix)
            if reader is None:
                continue
            read += 1
            relative = path.relative_to(args.root).as_posix()
            long_ones += [f"{relative}:{line}: {name} has {length} lines (limit {args.limit})"
                          for length, line, name in reader(path) if length > args.limit]
    for line in long_ones:
        print(line)
    if long_ones:
        return 1
    print(f"no function over {args.limit} lines in {read} files of {', '.join(args.folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
