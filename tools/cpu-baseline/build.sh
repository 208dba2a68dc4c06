#!/usr/bin/env bash
# Builds the CPU training harness against the library as it is at one commit of this repository, and prints the path
# of the harness DLL for `bench cpu-training --baseline-harness` / `--current-harness`.
#
#   tools/cpu-baseline/build.sh df3f3f1      # the baseline of issue 26
#   tools/cpu-baseline/build.sh HEAD         # the current build (committed state; uncommitted edits are not in it)
#
# The commit's tree is exported with `git archive` to $TMPDIR/cpu-baseline/<commit> (or the folder given as the second
# argument); nothing in the checkout changes but tools/cpu-baseline/{obj,bin}/<commit>/ (git-ignored).
set -euo pipefail
rev=${1:?usage: tools/cpu-baseline/build.sh <commit|HEAD> [export folder]}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
commit=$(git -C "$repo" rev-parse --short "$rev^{commit}") || { echo "build.sh: '$rev' is not a commit of $repo" >&2; exit 2; }
dir=${2:-${TMPDIR:-/tmp}/cpu-baseline/$commit}
if [ ! -f "$dir/src/ML.LinearAttention/ML.LinearAttention.csproj" ]; then
  mkdir -p "$dir"
  git -C "$repo" archive "$commit" | tar -x -C "$dir"
fi
nice dotnet build "$here/CpuBaseline.csproj" -c Release -nologo -v q \
  -p:LibraryRoot="$dir" -p:LibraryCommit="$commit" -p:HarnessName="$commit" >&2
dll="$here/bin/$commit/Release/net10.0/CpuBaseline.dll"
[ -f "$dll" ] || { echo "build.sh: the build did not write $dll" >&2; exit 1; }
echo "$dll"
