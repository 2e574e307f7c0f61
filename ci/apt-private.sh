# Sourced by ci/ scripts. Builds a private apt configuration (sources list + lists dir) that adds a
# Debian suite without touching the system's apt state. The mirror URI is read from the machine's own
# apt sources, so no registry host is written into this project.
#
#   apt_private_setup DIR SUITE...   -> sets APT_PRIVATE_OPTS (array of -o options)

debian_mirror_uri() {
  local f uri=""
  # deb822 files: the URIs field of a stanza whose Suites name a plain release (not -security).
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '
      BEGIN { RS=""; FS="\n" }
      {
        u=""; s=""
        for (i=1;i<=NF;i++) {
          if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); u=a[1] }
          if ($i ~ /^Suites:/) { s=$i }
        }
        if (u != "" && s !~ /security/ && u ~ /debian\/?$/) { print u; exit }
      }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  done
  # One-line format.
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" && $0 !~ /security/ {
             for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($i ~ /debian\/?$/) { print $i; exit } else break } }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  done
  echo "no Debian mirror URI found in /etc/apt/sources.list{,.d}" >&2
  return 1
}

apt_private_setup() {
  local dir=$1; shift
  local mirror; mirror=$(debian_mirror_uri) || return 1
  mkdir -p "$dir/lists/partial" "$dir/parts"
  : >"$dir/sources.list"
  local suite
  for suite in "$@"; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >>"$dir/sources.list"
  done
  APT_PRIVATE_OPTS=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=$dir/parts"
                    -o "Dir::State::Lists=$dir/lists")
}
