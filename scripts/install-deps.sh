#!/usr/bin/env bash
# Installs the Debian packages the platform and its tests need, when they are missing.
#   debootstrap   builds the base image from Debian's packages
#   btrfs-progs   mkfs.btrfs for the writable-layer store (disk quotas)
#   nftables      the sandbox firewall and NAT
#   iproute2      test "outside hosts" in network namespaces
#   bubblewrap    the floor in the runtime benchmark
#   python3-venv  the virtualenv for the official SDK (compatibility suite)
#   openssl       self-signed certificates for the HTTPS sites of the egress tests
#   openssh-client  ssh, scp, ssh-keygen, ssh-keyscan: the SSH gateway's tests use the real client
#   docker-registry  a local OCI registry on loopback for the image-pull tests (issue #16)
#   skopeo        pushes test OCI layouts into that registry
set -euo pipefail
need=()
for pair in debootstrap:debootstrap mkfs.btrfs:btrfs-progs nft:nftables ip:iproute2 bwrap:bubblewrap curl:curl openssl:openssl ssh:openssh-client ssh-keyscan:openssh-client script:bsdutils docker-registry:docker-registry skopeo:skopeo; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "host dependencies ready"
