# Shell helpers shared by the set-up scripts (source it; defines functions only).

# ensure_debian_packages TAG PKG...: apt-get install the packages that are not
# installed yet (with sudo when not root); TAG prefixes the log line.
ensure_debian_packages() {
  local tag=$1
  shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  printf '[%s] installing Debian packages: %s\n' "$tag" "${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
