#!/usr/bin/env bash
# Makes sdk/python/.venv with this SDK (editable) and its pinned test tools, once: it does nothing
# while the venv exists and was installed from the current pyproject.toml. Used by .ci/run and by
# tests/conformance_python_test.ts.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
stamp=.venv/installed-from
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or later is needed")'
"$python" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
echo "$want" >"$stamp"
