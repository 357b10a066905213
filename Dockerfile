# pikv in a container, in etcd's place in the tutorials' `docker run` lines:
#   docker run -d -p 2379:2379 -p 2380:2380 -p 4001:4001 --name pikv1 pikv \
#       -name pikv1 -listen-client-urls http://0.0.0.0:2379 -advertise-client-urls http://<ip>:2379 ...
# (`... pikv etcd -name ...`, with the program name first as some tutorials write it, works too.)
# Only the static binary: stage it first with `make docker-context`, then
#   docker buildx build --platform linux/amd64,linux/arm/v7,linux/arm64 -t pikv .
# (or `podman build --platform ...`). The data dir defaults to /data/<name>.pikv: mount a volume.
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
COPY dist/docker/${TARGETARCH}${TARGETVARIANT}/pikv /usr/local/bin/pikv
WORKDIR /data
VOLUME /data
EXPOSE 2379 2380 4001
ENTRYPOINT ["/usr/local/bin/pikv"]
