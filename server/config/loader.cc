#include "server/config/loader.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "lib/common/utf8.h"
#include "lib/config/host_names.h"
#include "server/config/parsers.h"
#include "server/config/validation.h"
#include "server/config/yaml_reader.h"
#include "yaml-cpp/depthguard.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/parser.h"

namespace sluice::config {
namespace {

constexpr absl::string_view kIstioGroup = "networking.istio.io";
constexpr absl::string_view kSluiceGroup = "sluice.dev";

bool IsIstioVersion(absl::string_view v) { return v == "v1alpha3" || v == "v1beta1" || v == "v1"; }

bool IsSkippedIstioKind(absl::string_view kind) {
  return kind == "Gateway" || kind == "Sidecar" || kind == "WorkloadGroup" ||
         kind == "EnvoyFilter" || kind == "ProxyConfig";
}

std::optional<ObjectMeta> ParseMetadata(const Field& doc, MapReader& top, const ParseContext& ctx) {
  ObjectMeta meta;
  meta.location = ctx.At(doc.node);
  meta.path_prefix = doc.path.empty() ? "" : absl::StrCat(doc.path, ".");
  std::optional<Field> f = top.Get("metadata");
  if (!f) {
    ctx.Error(doc.node, JoinPath(doc.path, "metadata.name"), "is required");
    return std::nullopt;
  }
  MapReader m(*f, ctx);
  if (!m.ok()) return std::nullopt;
  if (auto v = m.Get("name")) {
    meta.name = ReadString(*v, ctx).value_or("");
    meta.name_location = ctx.At(v->node);
    if (!IsDns1123Subdomain(meta.name)) {
      ctx.Error(
          v->node, v->path,
          absl::StrCat("\"", meta.name, "\" is not a valid name (lower-case DNS-1123 subdomain)"));
    }
  } else {
    ctx.Error(f->node, JoinPath(f->path, "name"), "is required");
  }
  if (auto v = m.Get("namespace")) {
    meta.namespace_name = ReadString(*v, ctx).value_or("default");
    if (!IsDns1123Label(meta.namespace_name) ||
        meta.namespace_name != absl::AsciiStrToLower(meta.namespace_name)) {
      ctx.Error(v->node, v->path, "is not a valid namespace (DNS-1123 label)");
    }
  }
  if (auto v = m.Get("labels")) meta.labels = ReadStringMap(*v, ctx);
  if (auto v = m.Get("annotations")) ReadStringMap(*v, ctx);
  // Written by the Kubernetes API server; present in `kubectl get -o yaml` output.
  for (const char* k : {"uid", "resourceVersion", "generation", "creationTimestamp",
                        "managedFields", "ownerReferences", "finalizers", "generateName",
                        "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}) {
    m.Ignore(k);
  }
  return meta;
}

void ParseDocument(const Field& doc, const ParseContext& ctx, ConfigSet& out);

void ParseList(MapReader& top, const ParseContext& ctx, ConfigSet& out) {
  top.Ignore("metadata");
  if (auto items = top.Get("items")) {
    ForEachItem(*items, ctx, [&](const Field& item, size_t) { ParseDocument(item, ctx, out); });
  }
}

void ParseDocument(const Field& doc, const ParseContext& ctx, ConfigSet& out) {
  if (!doc.node.IsDefined() || doc.node.IsNull()) return;  // empty document, e.g. after `---`
  MapReader top(doc, ctx);
  if (!top.ok()) return;
  // Once apiVersion or kind is wrong, the rest of the document cannot be checked: claim
  // its keys so the one real error is not buried under "unknown field" ones.
  auto claim_rest = [&]() {
    for (const auto& kv : doc.node) {
      if (kv.first.IsScalar()) top.Ignore(kv.first.Scalar());
    }
  };
  std::optional<Field> api = top.Get("apiVersion");
  std::optional<Field> kind_field = top.Get("kind");
  if (!api || !kind_field) {
    ctx.Error(doc.node, JoinPath(doc.path, api ? "kind" : "apiVersion"), "is required");
    claim_rest();
    return;
  }
  const std::string api_version = ReadString(*api, ctx).value_or("");
  const std::string kind = ReadString(*kind_field, ctx).value_or("");
  top.Ignore("status");
  if (kind == "List" && api_version == "v1") {
    ParseList(top, ctx, out);
    return;
  }
  std::vector<std::string> parts = absl::StrSplit(api_version, absl::MaxSplits('/', 1));
  const std::string group = parts.size() == 2 ? parts[0] : "";
  const std::string version = parts.size() == 2 ? parts[1] : parts[0];

  auto skip = [&](absl::string_view why) {
    top.Ignore("metadata");
    top.Ignore("spec");
    top.Ignore("data");
    for (const auto& kv : doc.node) top.Ignore(kv.first.Scalar());
    ctx.Notice(doc.node, "", absl::StrCat("skipping ", kind, " (", api_version, "): ", why));
  };

  if (group == kIstioGroup) {
    if (!IsIstioVersion(version)) {
      ctx.Error(api->node, JoinPath(doc.path, "apiVersion"),
                absl::StrCat("unsupported version \"", api_version,
                             "\" (expected v1alpha3, v1beta1 or v1)"));
      claim_rest();
      return;
    }
    if (IsSkippedIstioKind(kind)) {
      skip("not used by sluice");
      return;
    }
    if (kind != "VirtualService" && kind != "DestinationRule" && kind != "ServiceEntry" &&
        kind != "WorkloadEntry") {
      ctx.Error(kind_field->node, JoinPath(doc.path, "kind"),
                absl::StrCat("unknown kind \"", kind, "\" in ", kIstioGroup));
      claim_rest();
      return;
    }
  } else if (group == kSluiceGroup) {
    if (version != "v1") {
      ctx.Error(api->node, JoinPath(doc.path, "apiVersion"),
                absl::StrCat("unsupported version \"", api_version, "\" (expected v1)"));
      claim_rest();
      return;
    }
    if (kind != "Canary") {
      ctx.Error(kind_field->node, JoinPath(doc.path, "kind"),
                absl::StrCat("unknown kind \"", kind, "\" in sluice.dev (expected Canary)"));
      claim_rest();
      return;
    }
  } else {
    skip("not a traffic resource sluice reads");
    return;
  }

  std::optional<ObjectMeta> meta = ParseMetadata(doc, top, ctx);
  std::optional<Field> spec = top.Get("spec");
  if (!spec) {
    ctx.Error(doc.node, JoinPath(doc.path, "spec"), "is required");
    return;
  }
  if (!meta) return;
  meta->yaml = YAML::Dump(doc.node);
  if (kind == "VirtualService") {
    out.virtual_services.push_back(ParseVirtualService(*meta, *spec, ctx));
  } else if (kind == "DestinationRule") {
    out.destination_rules.push_back(ParseDestinationRule(*meta, *spec, ctx));
  } else if (kind == "ServiceEntry") {
    out.service_entries.push_back(ParseServiceEntry(*meta, *spec, ctx));
  } else if (kind == "WorkloadEntry") {
    out.workload_entries.push_back(ParseWorkloadEntry(*meta, *spec, ctx));
  } else if (kind == "Canary") {
    out.canaries.push_back(ParseCanary(*meta, *spec, ctx));
  }
}

bool IsYamlFile(const std::filesystem::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml";
}

// One YAML document of a stream and the line it starts on (0-based).
struct DocumentText {
  absl::string_view text;
  int first_line = 0;
};

// Splits a stream at document markers. A `---` or `...` at the start of a line is always a
// marker in YAML (it cannot occur inside a scalar), so this is exact. It exists because
// yaml-cpp 0.7's LoadAll can loop forever on some malformed streams; loading one document
// at a time with YAML::Load cannot.
std::vector<DocumentText> SplitDocuments(absl::string_view text) {
  std::vector<DocumentText> docs;
  size_t start = 0;
  int start_line = 0;
  size_t pos = 0;
  int line = 0;
  auto is_marker = [&](absl::string_view rest, absl::string_view marker) {
    return absl::StartsWith(rest, marker) &&
           (rest.size() == 3 || rest[3] == ' ' || rest[3] == '\t' || rest[3] == '\n' ||
            rest[3] == '\r');
  };
  while (pos < text.size()) {
    const absl::string_view rest = text.substr(pos);
    size_t eol = rest.find('\n');
    const size_t line_end = eol == absl::string_view::npos ? text.size() : pos + eol + 1;
    if (is_marker(rest, "---") && pos > start) {
      docs.push_back({text.substr(start, pos - start), start_line});
      start = pos;
      start_line = line;
    } else if (is_marker(rest, "...")) {
      docs.push_back({text.substr(start, line_end - start), start_line});
      start = line_end;
      start_line = line + 1;
    }
    pos = line_end;
    ++line;
  }
  if (start < text.size()) docs.push_back({text.substr(start), start_line});
  return docs;
}

// A document past kMaxYamlDepth or kMaxYamlAliasNodes, and where.
struct LimitExceeded {
  YAML::Mark mark;
  std::string message;
};

// Follows a document's parse events, before any node is built, and throws LimitExceeded at
// the first collection past kMaxYamlDepth or the first alias whose expansion takes the
// document past kMaxYamlAliasNodes. An alias inside the node it names (`&x [*x]`, which
// yaml-cpp builds as a list that contains itself) expands without end and is refused too.
class LimitChecker final : public YAML::EventHandler {
 public:
  explicit LimitChecker(absl::string_view text) : text_(text) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t anchor) override { Leaf(anchor); }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    Leaf(anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      throw LimitExceeded{
          mark, absl::StrCat("alias ", AliasName(mark), " refers to a node that contains it")};
    }
    const Size size = it->second;
    if (static_cast<int>(open_.size()) + size.depth > kMaxYamlDepth) {
      throw LimitExceeded{mark, absl::StrCat("nesting deeper than ", kMaxYamlDepth,
                                             " levels (through ", AliasName(mark), ")")};
    }
    alias_nodes_ += size.nodes;
    if (alias_nodes_ > kMaxYamlAliasNodes) {
      throw LimitExceeded{mark, absl::StrCat("aliases expand to more than ", kMaxYamlAliasNodes,
                                             " nodes (here ", AliasName(mark), ")")};
    }
    AddToParent(size);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  // A node with its aliases expanded: how many nodes, and how many collections deep.
  struct Size {
    uint64_t nodes = 1;
    int depth = 0;
  };
  struct Frame {
    YAML::anchor_t anchor;
    Size size;
  };

  void Leaf(YAML::anchor_t anchor) {
    if (anchor != 0) anchors_[anchor] = Size{};
    AddToParent(Size{});
  }
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (static_cast<int>(open_.size()) >= kMaxYamlDepth) {
      throw LimitExceeded{mark, absl::StrCat("nesting deeper than ", kMaxYamlDepth, " levels")};
    }
    open_.push_back({anchor, Size{1, 1}});
  }
  void Close() {
    const Frame done = open_.back();
    open_.pop_back();
    // Registered only now: an alias met while its anchor is open is inside it.
    if (done.anchor != 0) anchors_[done.anchor] = done.size;
    AddToParent(done.size);
  }
  void AddToParent(const Size& size) {
    if (open_.empty()) return;
    Size& parent = open_.back().size;
    parent.nodes += size.nodes;
    parent.depth = std::max(parent.depth, size.depth + 1);
  }
  // "*name" as written at `mark`, or "an alias" when the text does not show it there.
  std::string AliasName(const YAML::Mark& mark) const {
    if (mark.pos < 0 || static_cast<size_t>(mark.pos) >= text_.size() || text_[mark.pos] != '*') {
      return "an alias";
    }
    const absl::string_view rest = text_.substr(mark.pos);
    return std::string(rest.substr(0, std::min(rest.find_first_of(" \t\r\n,[]{}"), size_t{64})));
  }

  absl::string_view text_;
  std::vector<Frame> open_;  // the collections open at this point, outermost first
  absl::flat_hash_map<YAML::anchor_t, Size> anchors_;
  uint64_t alias_nodes_ = 0;
};

// Throws LimitExceeded (or, for YAML syntax errors, YAML::Exception).
void CheckLimits(const std::string& document) {
  std::istringstream in(document);
  YAML::Parser parser(in);
  LimitChecker checker(document);
  parser.HandleNextDocument(checker);
}

// The same depth check on a loaded document without aliases (a tree: every node is walked
// once): throws LimitExceeded at the first collection past kMaxYamlDepth.
void CheckDepth(const YAML::Node& node, int depth) {
  if (!node.IsMap() && !node.IsSequence()) return;
  if (depth > kMaxYamlDepth) {
    throw LimitExceeded{node.Mark(),
                        absl::StrCat("nesting deeper than ", kMaxYamlDepth, " levels")};
  }
  for (const auto& child : node) {
    if (node.IsMap()) {
      CheckDepth(child.first, depth + 1);
      CheckDepth(child.second, depth + 1);
    } else {
      CheckDepth(child, depth + 1);
    }
  }
}

// Loads one document within kMaxYamlDepth and kMaxYamlAliasNodes, or throws LimitExceeded
// (YAML::Exception for syntax errors). Following the parse events costs about two thirds of
// a load, so only a document that can hold an alias (it has an `&` for an anchor somewhere)
// is checked that way first; the others are loaded, then walked.
YAML::Node LoadWithinLimits(const std::string& document) {
  if (document.find('&') != std::string::npos) {
    CheckLimits(document);
    return YAML::Load(document);
  }
  YAML::Node node;
  try {
    node = YAML::Load(document);
  } catch (const YAML::DeepRecursion&) {
    CheckLimits(document);  // yaml-cpp stops at 500 levels: find the line of level 65
    throw;
  }
  CheckDepth(node, 1);
  return node;
}

// yaml-cpp reads UTF-16 and UTF-32 that start with a byte order mark; anything else must be
// UTF-8.
bool HasUtf16Or32ByteOrderMark(absl::string_view text) {
  return absl::StartsWith(text, "\xfe\xff") || absl::StartsWith(text, "\xff\xfe") ||
         absl::StartsWith(text, absl::string_view("\0\0\xfe\xff", 4));
}

// `text` with every byte that is not part of well-formed UTF-8 written as \xNN: yaml-cpp's
// messages quote single bytes, which may be the first of a multi-byte character, and a
// diagnostic must be UTF-8 to travel in a protobuf message.
std::string Utf8Escaped(absl::string_view text) {
  std::string out;
  while (const std::optional<InvalidUtf8> bad = FindInvalidUtf8(text)) {
    absl::StrAppend(&out, text.substr(0, bad->offset), absl::StrFormat("\\x%02x", bad->byte));
    text.remove_prefix(bad->offset + 1);
  }
  absl::StrAppend(&out, text);
  return out;
}

}  // namespace

void ParseYaml(absl::string_view text, const std::string& file_name, ConfigSet& out,
               Diagnostics& diagnostics) {
  if (!HasUtf16Or32ByteOrderMark(text)) {
    if (const std::optional<InvalidUtf8> bad = FindInvalidUtf8(text)) {
      diagnostics.Error({file_name, bad->line}, "",
                        absl::StrCat(bad->ToString(), "; YAML must be UTF-8"));
      return;
    }
    // NUL is UTF-8 but no YAML character, and yaml-cpp takes a text with NULs near the start
    // of a document for UTF-16 or UTF-32 (YAML's detection without a byte order mark) and
    // parses something else than what was sent.
    if (const size_t nul = text.find('\0'); nul != absl::string_view::npos) {
      const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + nul, '\n'));
      diagnostics.Error({file_name, line}, "",
                        absl::StrCat("a NUL byte at offset ", nul, "; YAML text cannot hold one"));
      return;
    }
  }
  for (const DocumentText& doc_text : SplitDocuments(text)) {
    ParseContext ctx{file_name, &diagnostics, doc_text.first_line};
    auto line_of = [&](const YAML::Mark& mark) {
      return mark.line >= 0 ? mark.line + 1 + ctx.line_offset : 0;
    };
    try {
      const YAML::Node doc = LoadWithinLimits(std::string(doc_text.text));
      ParseDocument(Field{doc, ""}, ctx, out);
    } catch (const LimitExceeded& e) {
      diagnostics.Error({file_name, line_of(e.mark)}, "", e.message);
    } catch (const YAML::Exception& e) {
      diagnostics.Error({file_name, line_of(e.mark)}, "",
                        absl::StrCat("invalid YAML: ", Utf8Escaped(e.msg)));
    }
  }
}

LoadResult LoadText(absl::string_view text, absl::string_view file_name) {
  LoadResult result;
  ParseYaml(text, std::string(file_name), result.config, result.diagnostics);
  ValidateConfigSet(result.config, result.diagnostics);
  return result;
}

std::vector<std::string> ConfigFilesIn(const std::string& folder) {
  namespace fs = std::filesystem;
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(folder, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename().string().starts_with(".")) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && IsYamlFile(it->path())) found.push_back(it->path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

LoadResult LoadPaths(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  LoadResult result;
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> found = ConfigFilesIn(path);
      if (found.empty()) {
        result.diagnostics.Warning({path, 0}, "", "folder holds no .yaml or .yml files");
      }
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(path, ec)) {
      files.push_back(path);
    } else {
      result.diagnostics.Error({path, 0}, "", "no such file or folder");
    }
  }
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      result.diagnostics.Error({file, 0}, "", "cannot be read");
      continue;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    ParseYaml(buffer.str(), file, result.config, result.diagnostics);
  }
  ValidateConfigSet(result.config, result.diagnostics);
  return result;
}

}  // namespace sluice::config
