// Prometheus metrics and health endpoints of a broker node (docs/operations.md, "Metrics and
// health").

export { BrokerMetrics, METRIC_NAMES } from "./registry.ts";
export {
  CONNECTIONS_MAX,
  DEFAULT_METRICS_PORT,
  type HttpResponse,
  type HttpRoutes,
  HttpServer,
  READ_TIMEOUT_MS,
  REQUEST_BYTES_MAX,
  WRITE_TIMEOUT_MS,
} from "./http.ts";
