# Sourced by bench scripts: the configuration every proxy benchmark runs sluice with.
#
# write_shop_config FILE V1_PORT V2_PORT: host `shop` on two sluice-stub upstreams on
# loopback (subsets v1 and v2), a 90/10 split with a 5 s timeout, two retries on 5xx and
# outlier detection (bench/proxy_compare.sh says why each).
write_shop_config() {
  cat >"$1" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: shop
spec:
  hosts:
  - shop
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
    ports:
      http: $2
    labels:
      app: shop
      version: v1
  - address: 127.0.0.1
    ports:
      http: $3
    labels:
      app: shop
      version: v2
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop
spec:
  host: shop
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 5s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts:
  - shop
  http:
  - name: shop
    route:
    - destination:
        host: shop
        subset: v1
      weight: 90
    - destination:
        host: shop
        subset: v2
      weight: 10
    timeout: 5s
    retries:
      attempts: 2
      perTryTimeout: 2s
      retryOn: 5xx
EOF
}
