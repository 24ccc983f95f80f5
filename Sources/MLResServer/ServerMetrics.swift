import Foundation
import Prometheus

/// The server's Prometheus metrics, one registry per server (no global metrics bootstrap, so
/// several servers can live in one process, as in the tests).
///
/// Average batch size = `mlres_inferences_total / mlres_executions_total`.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    /// Buckets of the queue and compute time histograms (seconds).
    static let timeBuckets: [Duration] = [
        .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10),
    ]
    static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]

    private let modelsLoadedGauge: Gauge

    public init() {
        modelsLoadedGauge = registry.makeGauge(descriptor: .init(
            namespace: "mlres", metricName: "models", unitName: "loaded",
            helpText: "Models currently loaded and served"))
    }

    private func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        .init(namespace: "mlres", metricName: name, unitName: unit, helpText: help)
    }

    /// One HTTP request answered.
    func request(method: String, endpoint: String, status: Int) {
        registry.makeCounter(
            descriptor: descriptor("http_requests", "total", "HTTP requests by endpoint and status"),
            labels: [("method", method), ("endpoint", endpoint), ("status", String(status))]
        ).increment()
    }

    /// One backend execution of `images` images that took `compute`.
    func execution(model: String, images: Int, compute: Duration) {
        registry.makeCounter(descriptor: descriptor("executions", "total",
                                                    "Backend executions (batches run)"),
                             labels: [("model", model)]).increment()
        registry.makeCounter(descriptor: descriptor("inferences", "total", "Images inferred"),
                             labels: [("model", model)]).increment(by: Int64(images))
        registry.makeDurationHistogram(
            descriptor: descriptor("compute", "seconds", "Backend compute time per execution"),
            labels: [("model", model)], buckets: ServerMetrics.timeBuckets).record(compute)
        registry.makeValueHistogram(
            descriptor: descriptor("batch_size", "images", "Images per backend execution"),
            labels: [("model", model)], buckets: ServerMetrics.batchBuckets).record(Double(images))
    }

    /// Time one request waited in the batching queue before its batch started.
    func queued(model: String, wait: Duration) {
        registry.makeDurationHistogram(
            descriptor: descriptor("queue", "seconds", "Time a request waited in the batch queue"),
            labels: [("model", model)], buckets: ServerMetrics.timeBuckets).record(wait)
    }

    /// A request refused because the model's queue was full.
    func rejected(model: String) {
        registry.makeCounter(descriptor: descriptor("queue_rejections", "total",
                                                    "Requests refused with 429 (queue full)"),
                             labels: [("model", model)]).increment()
    }

    func loadSucceeded(model: String) {
        registry.makeCounter(descriptor: descriptor("model_loads", "total", "Successful model loads"),
                             labels: [("model", model)]).increment()
    }

    func loadFailed(model: String) {
        registry.makeCounter(descriptor: descriptor("model_load_failures", "total",
                                                    "Failed model loads and reloads"),
                             labels: [("model", model)]).increment()
    }

    func setModelsLoaded(_ n: Int) { modelsLoadedGauge.set(Double(n)) }

    /// The Prometheus text exposition of every metric.
    public func text() -> String { registry.emitToString() }
}
