// Package observability holds no code: its tests check the Grafana
// dashboard and the Prometheus alert rules in docs/observability against the
// services. The files must be well formed (unique panel ids, panels that fit
// the grid and do not overlap, a datasource variable; every alert with a
// for, a severity, a summary and a runbook section that exists), and every
// metric, label and label value their PromQL names must be one the real
// gateway and handlers-svc binaries export, read from their /metrics after
// a little traffic.
package observability
