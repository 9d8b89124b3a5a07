#!/usr/bin/env bash
# Checks mutmut mutants one fresh pytest process each: for functions that run at import time or
# are cached in the process (solvers/tableaus.py, solvers/methods.py), where mutmut's fork
# server has already evaluated the original and every mutant "survives" whatever the tests.
# Run from the repository root after `mutmut run` has built mutants/ (see tests/README.md):
#   tests/mutation_fresh_process.sh NAME...   (NAMEs as `mutmut results --all true` prints them)
# Prints "killed|survived|timeout NAME" per mutant. TESTS overrides the test selection.
set -u
cd mutants || { echo "no mutants/ here: run mutmut first" >&2; exit 2; }
read -r -a tests <<< "${TESTS:-tests/solvers/test_tableaus.py tests/solvers/test_methods.py tests/solvers/test_estimators.py tests/solvers}"
check() {  # $1: mutant name ("" runs the unmutated code)
    MUTANT_UNDER_TEST="$1" PYTHONPATH= timeout 600 python -m pytest -x -q -p no:cacheprovider "${tests[@]}" > /dev/null 2>&1
}
check "" || { echo "the unmutated code fails these tests: fix that first" >&2; exit 2; }
for name in "$@"; do
    check "$name"
    case $? in
        0) echo "survived $name" ;;
        124) echo "timeout $name" ;;
        *) echo "killed $name" ;;
    esac
done
