#include <tuple>

#include "absl/strings/str_cat.h"
#include "lib/config/host_names.h"
#include "server/config/parsers.h"

namespace sluice::config {
namespace {

constexpr absl::string_view kSuccessRate = "request-success-rate";
constexpr absl::string_view kDuration = "request-duration";

CanaryMetric ParseMetric(const Field& f, const ParseContext& ctx) {
  CanaryMetric out;
  out.path = f.path;
  out.location = ctx.At(f.node);
  MapReader m(f, ctx);
  if (!m.ok()) return out;
  if (auto v = m.Get("name")) {
    out.name = ReadString(*v, ctx).value_or("");
  } else {
    ctx.Error(f.node, JoinPath(f.path, "name"), "is required");
  }
  std::optional<Field> range = m.Get("thresholdRange");
  std::optional<Field> min_field;
  std::optional<Field> max_field;
  if (range) {
    MapReader rm(*range, ctx);
    min_field = rm.Get("min");
    max_field = rm.Get("max");
    if (min_field) out.threshold_min = ReadDouble(*min_field, ctx);
    if (max_field) out.threshold_max = ReadDouble(*max_field, ctx);
    if (out.threshold_min && out.threshold_max && *out.threshold_min > *out.threshold_max) {
      ctx.Error(range->node, range->path, "min must not be greater than max");
    }
  }
  if (auto v = m.Get("interval")) out.interval = ReadIstioDuration(*v, ctx);
  std::optional<Field> query = m.Get("query");
  if (query) {
    out.query = ReadString(*query, ctx).value_or("");
    out.source = MetricSource::kPrometheus;  // a query only runs on Prometheus
  }
  if (auto v = m.Get("source")) {
    const std::string source = ReadString(*v, ctx).value_or("");
    if (source == "prometheus") {
      out.source = MetricSource::kPrometheus;
    } else if (source == "builtin") {
      if (query) {
        ctx.Error(v->node, v->path, "must be prometheus for a metric with a query");
      }
      out.source = MetricSource::kBuiltin;
    } else {
      ctx.Error(v->node, v->path,
                absl::StrCat("\"", source, "\" is not a source: builtin or prometheus"));
    }
  }
  if (out.source == MetricSource::kBuiltin && out.interval && *out.interval > absl::Minutes(10)) {
    ctx.Error(f.node, JoinPath(f.path, "interval"),
              "must be at most 10m: the server keeps 10 minutes of its own traffic windows "
              "(use source: prometheus for a longer window)");
  }
  if (!range) {
    ctx.Error(f.node, JoinPath(f.path, "thresholdRange"), "is required");
    return out;
  }
  if (!out.threshold_min && !out.threshold_max) {
    ctx.Error(range->node, range->path, "must set min, max or both");
  }
  if (out.name == kSuccessRate && out.query.empty()) {
    if (!out.threshold_min) {
      ctx.Error(range->node, JoinPath(range->path, "min"),
                "is required for request-success-rate (a percentage, e.g. 99)");
    } else if (*out.threshold_min < 0 || *out.threshold_min > 100) {
      ctx.Error(min_field->node, min_field->path, "must be between 0 and 100 (percent)");
    }
  } else if (out.name == kDuration && out.query.empty()) {
    if (!out.threshold_max) {
      ctx.Error(range->node, JoinPath(range->path, "max"),
                "is required for request-duration (p99 in milliseconds, e.g. 500)");
    } else if (*out.threshold_max <= 0) {
      ctx.Error(max_field->node, max_field->path, "must be greater than 0 (ms)");
    }
  } else if (out.query.empty() && !out.name.empty()) {
    ctx.Error(f.node, JoinPath(f.path, "query"),
              absl::StrCat("is required for custom metric \"", out.name,
                           "\" (built-in metrics are request-success-rate and "
                           "request-duration)"));
  }
  return out;
}

std::optional<int32_t> ReadWeight(const Field& f, const ParseContext& ctx) {
  std::optional<int64_t> v = ReadInt(f, ctx, 1, 100);
  if (!v) return std::nullopt;
  return static_cast<int32_t>(*v);
}

void ParseAnalysis(const Field& f, const ParseContext& ctx, CanaryAnalysis& out) {
  MapReader m(f, ctx);
  if (!m.ok()) return;
  if (auto v = m.Get("interval")) {
    out.interval = ReadIstioDuration(*v, ctx).value_or(out.interval);
  }
  if (auto v = m.Get("threshold")) {
    out.threshold = static_cast<int32_t>(ReadInt(*v, ctx, 1, 1000).value_or(out.threshold));
  }
  if (auto v = m.Get("minRequests")) {
    out.min_requests = ReadInt(*v, ctx, 0, INT64_MAX).value_or(out.min_requests);
  }
  std::optional<Field> steps = m.Get("stepWeights");
  std::optional<Field> step = m.Get("stepWeight");
  std::optional<Field> max = m.Get("maxWeight");
  if (steps && (step || max)) {
    const Field& other = step ? *step : *max;
    ctx.Error(other.node, other.path, "cannot be set together with stepWeights");
  }
  if (steps) {
    out.step_weights.clear();
    ForEachItem(*steps, ctx, [&](const Field& item, size_t) {
      std::optional<int32_t> w = ReadWeight(item, ctx);
      if (!w) return;
      if (!out.step_weights.empty() && *w <= out.step_weights.back()) {
        ctx.Error(item.node, item.path, "step weights must increase");
      }
      out.step_weights.push_back(*w);
    });
    if (out.step_weights.empty() && steps->node.IsSequence()) {
      ctx.Error(steps->node, steps->path, "must list at least one weight");
    }
  } else if (step || max) {
    if (!step) {
      ctx.Error(max->node, JoinPath(f.path, "stepWeight"), "is required with maxWeight");
      return;
    }
    std::optional<int32_t> s = ReadWeight(*step, ctx);
    std::optional<int32_t> mx = max ? ReadWeight(*max, ctx) : std::optional<int32_t>(100);
    if (!s || !mx) return;
    if (*s > *mx) {
      ctx.Error(step->node, step->path, "must not be greater than maxWeight");
      return;
    }
    // Flagger's linear ramp: +stepWeight per interval until maxWeight is reached.
    out.step_weights.clear();
    for (int32_t w = *s; w < *mx; w += *s) out.step_weights.push_back(w);
    out.step_weights.push_back(*mx);
  }
  if (auto v = m.Get("judge")) {
    const std::string judge = ReadString(*v, ctx).value_or("");
    if (judge == "sequential") {
      out.judge = CanaryJudge::kSequential;
    } else if (judge == "threshold") {
      out.judge = CanaryJudge::kThreshold;
    } else {
      ctx.Error(v->node, v->path,
                absl::StrCat("\"", judge, "\" is not a judge: threshold or sequential"));
    }
  }
  if (auto v = m.Get("falseRollbackRate")) {
    std::optional<double> rate = ReadDouble(*v, ctx);
    if (rate && (*rate <= 0 || *rate > 0.5)) {
      ctx.Error(v->node, v->path, "must be greater than 0 and at most 0.5 (e.g. 0.01 for 1%)");
    } else if (rate) {
      out.false_rollback_rate = *rate;
    }
  }
  if (auto v = m.Get("metrics")) {
    ForEachItem(*v, ctx,
                [&](const Field& item, size_t) { out.metrics.push_back(ParseMetric(item, ctx)); });
  }
}

}  // namespace

Canary ParseCanary(ObjectMeta meta, const Field& spec, const ParseContext& ctx) {
  Canary c;
  c.meta = std::move(meta);
  c.analysis.step_weights = {10, 25, 50, 75, 100};
  c.analysis.min_requests = 20;
  MapReader m(spec, ctx);
  if (!m.ok()) return c;
  if (auto v = m.Get("host")) {
    c.host = ReadString(*v, ctx).value_or("");
    c.host_location = ctx.At(v->node);
    if (std::string problem = CheckHostName(c.host, /*allow_wildcard=*/false); !problem.empty()) {
      ctx.Error(v->node, v->path, problem);
    }
  } else {
    ctx.Error(spec.node, JoinPath(spec.path, "host"), "is required");
  }
  std::optional<Field> canary_field;
  for (auto [key, into, where] :
       {std::tuple{"stableSubset", &c.stable_subset, &c.stable_subset_location},
        std::tuple{"canarySubset", &c.canary_subset, &c.canary_subset_location}}) {
    if (auto v = m.Get(key)) {
      *into = ReadString(*v, ctx).value_or("");
      *where = ctx.At(v->node);
      if (std::string_view(key) == "canarySubset") canary_field = v;
      if (!IsDns1123Label(*into)) {
        ctx.Error(v->node, v->path, absl::StrCat("\"", *into, "\" is not a valid subset name"));
      }
    } else {
      ctx.Error(spec.node, JoinPath(spec.path, key), "is required");
    }
  }
  if (!c.stable_subset.empty() && c.stable_subset == c.canary_subset && canary_field) {
    ctx.Error(canary_field->node, canary_field->path, "must differ from stableSubset");
  }
  if (auto v = m.Get("analysis")) ParseAnalysis(*v, ctx, c.analysis);
  return c;
}

}  // namespace sluice::config
