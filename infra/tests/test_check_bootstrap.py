import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import check_bootstrap  # noqa: E402

OBJDUMP = """
bootstrap:     file format elf64-x86-64

DYNAMIC SYMBOL TABLE:
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) memcpy
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.17) clock_gettime
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) __libc_start_main
0000000000000000  w   DF *UND*  0000000000000000 (GLIBC_2.3.4) __register_atfork
"""


def test_finds_the_newest_glibc_version():
    assert max(check_bootstrap.glibc_versions(OBJDUMP)) == (2, 34)
    assert (2, 3, 4) in check_bootstrap.glibc_versions(OBJDUMP)


def test_newer_than_al2023_is_refused():
    newer = OBJDUMP + "0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.38) __isoc23_strtol\n"
    assert max(check_bootstrap.glibc_versions(newer)) > check_bootstrap.AL2023_GLIBC


def test_a_missing_bootstrap_fails(tmp_path):
    assert check_bootstrap.main(["check", str(tmp_path)]) == 1
