# Sourced by the scripts here: make sure `uv` is on PATH (it is a PyPI package).
if ! command -v uv >/dev/null 2>&1; then
  if [ -x "$HOME/.local/bin/uv" ]; then
    PATH="$HOME/.local/bin:$PATH"
  else
    echo "installing uv (the Python package manager Tekton uses) ..." >&2
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
    PATH="$HOME/.local/bin:$PATH"
  fi
fi
