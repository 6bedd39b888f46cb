"""No function in the library, the CLI or the exporter runs past 60 lines
(scripts/check_function_lengths.py); the check is shown to find the functions it exists for."""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "check_function_lengths.py")


def run_check(*args):
    return subprocess.run([sys.executable, CHECK, *args], capture_output=True, text=True)


def test_no_function_is_over_60_lines():
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("no function over 60 lines in ")


def test_a_long_cpp_function_is_named_and_its_blocks_are_not(tmp_path):
    body = "".join(f"  if (x > {i}) {{\n    x -= {i};\n  }}\n" for i in range(20))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "long.cpp").write_text(
        "// a comment with { braces\nnamespace n {\nstruct S {\n  int f(int x) const {\n"
        + body + '    const char* s = "}";\n  return x;\n  }\n};\n}  // namespace n\n')
    result = run_check("--root", str(tmp_path), "src")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["src/long.cpp:4: f has 64 lines (limit 60)"]


def test_a_python_docstring_does_not_count(tmp_path):
    (tmp_path / "python").mkdir()
    docstring = '    """' + "\n".join(["text"] * 30) + '"""\n'
    code = "".join(f"    x = {i}\n" for i in range(55))
    (tmp_path / "python" / "m.py").write_text(
        "def documented():\n" + docstring + code + "\n\ndef long():\n" + code + code)
    result = run_check("--root", str(tmp_path), "python")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["python/m.py:89: long has 111 lines (limit 60)"]
