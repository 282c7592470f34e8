# The nosdn image: `nosdn agent` for the DaemonSet printed by `nosdn manifests`.
#
#   docker build -t nosdn:0.1.0 .
#   sudo tools/build-image.sh   # the same image without Docker (debootstrap + umoci), tested
#   nosdn manifests --image nosdn:0.1.0 --cluster-cidr 10.244.0.0/16 | kubectl apply -f -
#
# The agent needs iproute2 (only for people debugging inside the pod: the agent itself talks
# netlink directly), nftables (egress masquerade), bird2 (BIRD 2, run by `agent --bgp`) and
# the CNI plugins in /usr/lib/cni (the install-cni init container copies them onto the host).
# It runs as root with NET_ADMIN and NET_RAW only (and NET_BIND_SERVICE with --bgp); the
# DaemonSet gives it the host's network namespace.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables iproute2 bird2 \
    containernetworking-plugins \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# routes appear as "proto nosdn" in `ip route` inside the pod
RUN mkdir -p /etc/iproute2/rt_protos.d \
 && echo "157 nosdn" > /etc/iproute2/rt_protos.d/nosdn.conf
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["nosdn"]
CMD ["agent"]
