# Sourced by the scripts here: make sure `uv` is on PATH (it is a PyPI package).
TEKTON_UV_PATH_ADDED=0
if ! command -v uv >/dev/null 2>&1; then
  PATH="$HOME/.local/bin:$PATH"
  TEKTON_UV_PATH_ADDED=1  # up.sh tells the person to do the same in their shell
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv (the Python package manager Tekton uses) ..." >&2
  # A Debian system Python refuses plain `pip install --user` (PEP 668); uv is a single
  # self-contained tool, so installing it for this user is safe there too.
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
    || python3 -m pip install --quiet uv
fi
