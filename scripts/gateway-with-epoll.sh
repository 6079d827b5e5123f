#!/bin/sh
# Runs the sluice-gateway named by $SLUICE_EPOLL_GATEWAY with --io epoll before the given
# flags: `make tsan-test` points the gateway integration tests here, so that the epoll
# path (what containers whose seccomp profile forbids io_uring get) is run end to end too,
# while every other stage runs the default (io_uring where the kernel allows it).
exec "${SLUICE_EPOLL_GATEWAY:?set SLUICE_EPOLL_GATEWAY to a sluice-gateway binary}" --io epoll "$@"
