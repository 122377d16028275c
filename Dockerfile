# ntsd: NTP + NTS (RFC 8915) time server, in place of the chrony-based
# cturra/ntp image (same container name, ports and main variables; see
# docs/docker.md, "Migrating from cturra/ntp").
#
#   docker build --force-rm -t ntsntp:latest .
#
# No "# syntax=" line and no --pull on purpose: both need Docker Hub.  The
# image only needs a local debian:trixie-slim (tests/docker/run.sh builds
# one with debootstrap when there is no registry).  Debian 13 for nettle
# 3.10: AES-128-GCM-SIV (AEAD 30), which chrony >= 4.6.1 clients prefer.

############################################################################
# Stage 1: build libntsntp, ntsd and ntsctl with meson.
FROM debian:trixie-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      meson ninja-build gcc libc6-dev pkg-config \
      libgnutls28-dev nettle-dev libuv1-dev libseccomp-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Staged with DESTDIR; the next stage picks the binaries out of /staging.
# --libdir is explicit: without dpkg-dev (dpkg-architecture) meson would pick
# lib64 instead of Debian's multiarch directory.
# -Dseccomp=enabled: an image without its system call filter is an error;
# so is one without AES-128-GCM-SIV (nettle < 3.10, a base older than
# Debian 13).
RUN meson setup /build --buildtype=release -Dtests=false -Ddaemon=true \
      -Dseccomp=enabled \
      --prefix=/usr --libdir=lib/$(gcc -print-multiarch) \
 && { grep -q '^#define NTSNTP_HAVE_GCM_SIV 1' /build/include/ntsntp/version.h \
      || { echo "Dockerfile: nettle lacks AES-128-GCM-SIV (need nettle >= 3.10, debian:trixie-slim)" >&2; \
           exit 1; }; } \
 && ninja -C /build \
 && meson install -C /build --destdir /staging

############################################################################
# Stage 2: assemble the runtime root file system from what stage 1 built.
FROM build AS rootfs

RUN set -eu; \
    R=/rootfs; S=/staging; \
    libdir=$S/usr/lib/$(gcc -print-multiarch); \
    mkdir -p $R/usr/sbin $R/usr/bin $R/etc/ssl/certs $R/var/lib/ntsd $R/tmp; \
    chmod 1777 $R/tmp; \
    for b in ntsd:sbin ntsctl:bin; do \
      name=${b%%:*}; dir=${b##*:}; \
      # Installed to sbin/bin by daemon/meson.build; accept any install_dir.
      src=$(find $S -name "$name" -type f | head -n1); \
      if [ -z "$src" ]; then \
        echo "Dockerfile: $name was not built/installed (daemon/meson.build)" >&2; \
        exit 1; \
      fi; \
      install -m 0755 "$src" "$R/usr/$dir/$name"; \
      # Every shared object the dynamic loader will open (libntsntp if
      # linked shared, gnutls, nettle, hogweed, gmp, p11-kit, idn2,
      # unistring, tasn1, ffi, uv, seccomp, libc, ld.so ...), at the same
      # path with symlinks resolved; libntsntp comes from the staging tree.
      LD_LIBRARY_PATH=$libdir ldd "$src" \
        | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}' \
        | while read -r so; do \
            dst=$R${so#$S}; mkdir -p "${dst%/*}"; cp -L "$so" "$dst"; \
          done; \
    done; \
    # glibc >= 2.34 dlopens libgcc_s for pthread_cancel/pthread_exit unwinding.
    so=/lib/$(gcc -print-multiarch)/libgcc_s.so.1; \
    [ ! -e "$so" ] || cp -L --parents "$so" $R/; \
    # The default trust store compiled into Debian's GnuTLS, for NTS client
    # use (upstreams such as time.cloudflare.com with NTS).
    cp -L /etc/ssl/certs/ca-certificates.crt $R/etc/ssl/certs/; \
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
      'ntsd:x:101:101:ntsd:/var/lib/ntsd:/sbin/nologin' \
      'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' > $R/etc/passwd; \
    printf '%s\n' 'root:x:0:' 'ntsd:x:101:' 'nogroup:x:65534:' > $R/etc/group; \
    printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' \
      > $R/etc/nsswitch.conf; \
    # STATE_DIR: NTS keys and the ntsctl control socket (ntsd.sock).
    chown 101:101 $R/var/lib/ntsd; \
    chmod 0750 $R/var/lib/ntsd; \
    # Fail the build here rather than at "docker run" if a library was
    # missed: the runtime root's own loader lists the binaries' libraries
    # (without running them).
    for f in /usr/sbin/ntsd /usr/bin/ntsctl; do \
      interp=$(ldd "$R$f" | awk '/^[[:space:]]*\//{print $1; exit}'); \
      out=$(chroot $R "$interp" --list "$f" 2>&1) \
        && ! printf '%s\n' "$out" | grep -q 'not found' \
        || { echo "Dockerfile: $f lacks libraries in the runtime root:" >&2; \
             printf '%s\n' "$out" >&2; exit 1; }; \
    done

############################################################################
# Stage 3: runtime.
#
# FROM scratch rather than debian:trixie-slim: ntsd needs no shell, no
# package manager and no startup script (it reads its environment itself and
# the HEALTHCHECK uses exec form), so the image is just the two binaries, the
# shared libraries ldd lists, passwd/group for the ntsd user and the CA bundle:
# about 12 MB (a bookworm-slim runtime stage with the same libraries was
# 76 MB), and nothing else in the image to patch or exploit.  A fully
# static binary is not possible from Debian packages (there is no static
# p11-kit), hence the copied shared libraries.
# For debugging use "docker exec ntp ntsctl ..." or run a debug container in
# the same namespaces (docker run --rm -it --pid container:ntp
# --network container:ntp debian:trixie-slim).
FROM scratch

COPY --from=rootfs /rootfs/ /

# ntsd's own defaults apply to everything else (NTP_SERVERS=time.cloudflare.com,
# STATE_DIR=/var/lib/ntsd, NTSD_USER=ntsd ...); see docs/docker.md.
ENV PATH=/usr/sbin:/usr/bin

# NTP and NTS-KE.  ntsd starts as root only to bind these ports and to read
# NTS_KEY (certbot's privkey.pem is 0600 root), then drops to NTSD_USER.
EXPOSE 123/udp 4460/tcp

# NTS server keys (so clients keep their cookies across restarts) and state.
VOLUME /var/lib/ntsd

# Exec form: there is no /bin/sh in the image.  Tests shorten the interval
# with a compose override (tests/docker/docker-compose.test.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/bin/ntsctl", "health"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/sbin/ntsd"]
