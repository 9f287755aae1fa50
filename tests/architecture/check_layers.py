#!/usr/bin/env python3
"""Keel's layer check: fails when an #include or a CMake link crosses a layer the wrong way.

docs/architecture.md describes the layers; this script is what holds them. It reads every C/C++
source under the repository's top-level folders (no compiler, no build tree) and every
CMakeLists.txt / *.cmake of the main project, and reports each violation as `path:line: [rule]
message`. Rules:

  torch-free   proto/ coordinator/ metrics/ rpc/ stability/ common/ data/ checkpoint/ registry/
               launch/ fuzz/, parallel/ except its Torch side library (torch_adapter.*,
               tensor_parallel_ops.*, gradient_bucketer.*), and kernels/ except its LibTorch
               adapters (*_torch*): never #include <torch/...>, <ATen/...>, <c10/...> or
               <caffe2/...>, neither directly nor, in a translation unit, through repository
               headers that do (the chain is printed). common/torch_pch.cpp (the precompiled
               header's source) is the one exception.
  no-model     the same folders never #include a model/ header (not even Torch-free ones).
  cli-private  nothing outside cli/ (and tests/cli/) includes a cli/ header.
  layers       an #include from folder A of a header in folder B (A != B) needs B in ALLOWED[A]:
               the folder graph taken from the tree, which must stay acyclic (checked too).
               cli/, bench/, fuzz/ and tests/ sit on top and may include any folder but cli/.
  proto-torch  no translation unit reaches both LibTorch and protobuf/gRPC headers (the PyTorch
               wheel ships google/protobuf headers of another version; docs/gpu.md).
  http-torch   no translation unit reaches both LibTorch and prometheus-cpp/civetweb headers, and
               only metrics/ (and tests/) include prometheus-cpp or civetweb directly.
  unknown      every top-level folder holding C/C++ sources is in ALLOWED.
  torch-private (CMake) a target that does not compile against LibTorch never receives LibTorch's
               usage requirements through a PUBLIC/INTERFACE link of a library it links: Torch
               stays PRIVATE (the wheel's fmt 12 headers break spdlog TUs on GPU nodes).
  http-link    (CMake) no target links both LibTorch and prometheus-cpp/civetweb (civetweb cannot
               start its threads in a LibTorch-CUDA process; docs/gpu.md).
  spm-link     (CMake) no target links SentencePiece together with protobuf, gRPC or LibTorch
               (Debian's SentencePiece exports a bundled protobuf-lite that crashes such a process).

    check_layers.py [--root DIR]   check the tree (default: the repository holding this script)
    check_layers.py --self-test    run the checker on small fake trees with known violations and
                                   check that it finds exactly them (so the check can fail)
    check_layers.py --graph        print the allowed folder graph, bottom layer first
Exit status 0 when clean, 1 on violations (or a failed self-test), 2 on bad usage.
"""
import os
import re
import sys
import tempfile

# ---- the rules ----------------------------------------------------------------------------------

# Folder -> folders its sources may include (besides itself): exactly the edges of the tree of
# issue 21. A new edge is a design decision: add it here and to docs/architecture.md; the graph
# must stay acyclic.
ALLOWED = {
    "common": set(),
    "proto": set(),
    "kernels": {"common"},
    "data": {"common"},
    "checkpoint": {"common"},
    "metrics": {"common"},
    "registry": {"common", "metrics"},
    "parallel": {"common"},
    "device": {"common"},
    "stability": {"common", "metrics"},
    "rpc": {"common", "proto"},
    "coordinator": {"common", "metrics", "proto", "rpc"},
    "model": {"common", "kernels", "parallel"},
    "optim": {"common", "model"},
    "checkpoint_torch": {"common", "checkpoint", "model", "optim"},
    "diagnostics": {"common", "model", "parallel"},
    "generation": {"common", "model"},
    "interop": {"checkpoint", "checkpoint_torch", "common", "data", "model"},
    "worker": {"checkpoint", "checkpoint_torch", "common", "data", "device", "diagnostics", "metrics", "model",
               "optim", "parallel", "rpc", "stability"},
    "launch": {"common", "device", "parallel", "registry", "rpc", "worker"},
}
# The top: programs, benchmarks, fuzz targets and tests may include any folder but cli/.
TOP = {"cli", "bench", "fuzz", "tests"}

TORCH_FREE = {"proto", "coordinator", "metrics", "rpc", "stability", "parallel", "common", "data",
              "checkpoint", "registry", "launch", "fuzz", "kernels"}
# Files of Torch-free folders that are Torch's side of them (path patterns relative to the root).
TORCH_SIDE = [
    re.compile(r"^parallel/(torch_adapter|tensor_parallel_ops|gradient_bucketer)\.[^/]+$"),
    re.compile(r"^kernels/[^/]*_torch[^/]*$"),
    re.compile(r"^common/torch_pch\.cpp$"),
]

TORCH_ROOTS = ("torch", "ATen", "c10", "caffe2")
PROTO_PREFIXES = ("google/protobuf/", "grpcpp/", "grpc/", "grpc++/", "keel/v1/")
HTTP_PREFIXES = ("prometheus/", "civetweb", "CivetServer")
SOURCE_EXT = (".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh")
SKIP_DIRS = {"build", "runs", "node_modules"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')


def torch_side(rel):
    return any(p.search(rel) for p in TORCH_SIDE)


def must_be_torch_free(rel):
    return rel.split("/")[0] in TORCH_FREE and not torch_side(rel)


# ---- the include graph --------------------------------------------------------------------------

def source_files(root):
    files = []
    for top in sorted(os.listdir(root)):
        path = os.path.join(root, top)
        if top.startswith(".") or top in SKIP_DIRS or top.startswith("build") or not os.path.isdir(path):
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "corpus")
            for f in sorted(filenames):
                if f.endswith(SOURCE_EXT):
                    files.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return files


def read_includes(root, rel):
    """[(line number, include text)], block comments skipped."""
    out = []
    in_comment = False
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if in_comment:
                end = line.find("*/")
                if end < 0:
                    continue
                line = line[end + 2:]
                in_comment = False
            start = line.find("/*")
            if start >= 0 and line.find("*/", start + 2) < 0 and not line.lstrip().startswith("#"):
                in_comment = True
                line = line[:start]
            m = INCLUDE.match(line)
            if m:
                out.append((number, m.group(2)))
    return out


class Tree:
    def __init__(self, root):
        self.root = root
        self.files = source_files(root)
        self.file_set = set(self.files)
        self.tops = {f.split("/")[0] for f in self.files}
        self.includes = {f: read_includes(root, f) for f in self.files}
        self._reach = {}

    def resolve(self, rel, text):
        """The repository file an #include names, or None (system/third-party/generated)."""
        if text in self.file_set:
            return text
        local = os.path.normpath(os.path.join(os.path.dirname(rel), text)).replace(os.sep, "/")
        return local if local in self.file_set else None

    @staticmethod
    def external_kind(text):
        if text.split("/")[0] in TORCH_ROOTS:
            return "torch"
        if text.startswith(PROTO_PREFIXES) or text.endswith(".pb.h"):
            return "proto"
        if text.startswith(HTTP_PREFIXES):
            return "http"
        return None

    def reach(self, rel, stack=()):
        """kind -> chain [(file, line, include text), ...] to the first include of that kind."""
        if rel in self._reach:
            return self._reach[rel]
        if rel in stack:  # an include cycle: nothing new down this path
            return {}
        found = {}
        for line, text in self.includes[rel]:
            kind = self.external_kind(text)
            if kind and kind not in found:
                found[kind] = [(rel, line, text)]
            target = self.resolve(rel, text)
            if target:
                for kind, chain in self.reach(target, stack + (rel,)).items():
                    if kind not in found:
                        found[kind] = [(rel, line, text)] + chain
        self._reach[rel] = found
        return found


def include_folder(text, target):
    if target:
        return target.split("/")[0]
    if text.startswith("keel/v1/"):
        return "proto"  # the generated protocol headers
    return None


def chain_text(chain):
    return " -> ".join('%s:%d includes %s' % c for c in chain)


def check_cycles(allowed):
    """Messages for each cycle of the folder graph (empty when acyclic)."""
    problems = []
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(allowed.get(node, ())):
            if dep == node:
                continue
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                problems.append("the allowed folder graph has a cycle: " + " -> ".join(cycle))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(allowed):
        if node not in state:
            visit(node, [node])
    for node, deps in sorted(allowed.items()):
        for dep in sorted(deps):
            if dep in TOP:
                problems.append("ALLOWED[%s] names %s, which sits on top" % (node, dep))
    return problems


def layer_order(allowed):
    """Folders bottom first (each after everything it may include)."""
    order, done = [], set()

    def visit(node):
        if node in done:
            return
        done.add(node)
        for dep in sorted(allowed.get(node, ())):
            visit(dep)
        order.append(node)

    for node in sorted(allowed, key=lambda n: (len(allowed[n]), n)):
        visit(node)
    return order


def check_includes(tree, allowed=None):
    allowed = ALLOWED if allowed is None else allowed
    problems = [("ALLOWED", 0, "layers", m) for m in check_cycles(allowed)]
    for top in sorted(tree.tops - set(allowed) - TOP):
        problems.append((top + "/", 0, "unknown",
                         "folder %s/ is not in the layer table: add it to ALLOWED in "
                         "tests/architecture/check_layers.py and to docs/architecture.md" % top))
    for rel in tree.files:
        top = rel.split("/")[0]
        torch_free = must_be_torch_free(rel)
        # What a file reaches through other headers is judged where it is compiled (a translation
        # unit), so one bad header is reported at its own line and at each TU, not at every header.
        unit = not rel.endswith((".h", ".hpp", ".cuh"))
        for line, text in tree.includes[rel]:
            target = tree.resolve(rel, text)
            folder = include_folder(text, target)
            kind = tree.external_kind(text)
            if torch_free and kind == "torch":
                problems.append((rel, line, "torch-free", "%s/ is Torch-free but includes <%s>" % (top, text)))
            if torch_free and folder == "model":
                problems.append((rel, line, "no-model", "%s/ must not include model/ headers (%s)" % (top, text)))
            if folder == "cli" and top != "cli" and not rel.startswith("tests/cli/"):
                problems.append((rel, line, "cli-private", "only cli/ may include cli/ headers (%s)" % text))
            if kind == "http" and top not in ("metrics", "tests"):
                problems.append((rel, line, "http-torch",
                                 "prometheus-cpp/civetweb headers belong to metrics/ only (%s)" % text))
            if folder and folder != top and folder != "cli" and top not in TOP:
                if top in allowed and folder not in allowed[top]:
                    problems.append((rel, line, "layers", "%s/ may not include %s/ (%s); %s/ may include: %s" % (
                        top, folder, text, top, ", ".join(sorted(allowed[top])) or "nothing")))
            if unit and torch_free and target and kind is None and folder != "model":
                via = tree.reach(target).get("torch")
                if via:
                    problems.append((rel, line, "torch-free", "%s/ is Torch-free but reaches LibTorch: %s" % (
                        top, chain_text([(rel, line, text)] + via))))
        reached = tree.reach(rel) if unit else {}
        if "torch" in reached:
            for other, rule in (("proto", "proto-torch"), ("http", "http-torch")):
                if other in reached:
                    problems.append((rel, reached[other][0][1], rule, "reaches LibTorch (%s) and %s (%s)" % (
                        chain_text(reached["torch"]), "protobuf/gRPC" if other == "proto" else "prometheus/civetweb",
                        chain_text(reached[other]))))
    return problems


# ---- the CMake link graph -----------------------------------------------------------------------

TORCH_LINKS = {"${TORCH_LIBRARIES}", "keel_torch_pch", "torch", "torch_cuda", "torch_cpu"}
HTTP_LINK = re.compile(r"^(prometheus-cpp::|civetweb)")
SPM_LINK = re.compile(r"^(PkgConfig::SENTENCEPIECE|sentencepiece)")
PROTO_LINK = re.compile(r"^(protobuf::|gRPC::|keel_proto$)")
LINK_KEYWORDS = {"PUBLIC", "PRIVATE", "INTERFACE", "LINK_PUBLIC", "LINK_PRIVATE", "LINK_INTERFACE_LIBRARIES"}


def cmake_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        top = rel_dir.split("/")[0]
        if rel_dir != "." and (top.startswith(".") or top in SKIP_DIRS or top.startswith("build") or top == "fuzz"):
            dirnames[:] = []
            continue
        dirnames.sort()
        for f in sorted(filenames):
            if f == "CMakeLists.txt" or f.endswith(".cmake"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return out


def cmake_commands(text):
    """[(line, command name, [arguments])] with comments and quotes handled."""
    out, i, n, line = [], 0, len(text), 1
    name_re = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif name_re.match(c):
            m = name_re.match(text, i)
            j = m.end()
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == "(":
                start_line, depth, k, args, cur, quoted = line, 1, j + 1, [], "", False
                while k < n and depth:
                    ch = text[k]
                    if ch == "\n":
                        line += 1
                    if quoted:
                        if ch == "\\" and k + 1 < n:
                            cur += text[k:k + 2]
                            k += 2
                            continue
                        if ch == '"':
                            quoted = False
                        cur += ch
                    elif ch == '"':
                        quoted = True
                        cur += ch
                    elif ch == "#":
                        while k < n and text[k] != "\n":
                            k += 1
                        continue
                    elif ch == "(":
                        depth += 1
                        cur += ch
                    elif ch == ")":
                        depth -= 1
                        if depth:
                            cur += ch
                    elif ch in " \t\n\r":
                        if cur:
                            args.append(cur)
                        cur = ""
                    else:
                        cur += ch
                    k += 1
                if cur:
                    args.append(cur)
                out.append((start_line, m.group(0), args))
                i = k
            else:
                i = m.end()
        else:
            i += 1
    return out


class LinkGraph:
    def __init__(self, root):
        self.targets = {}    # name -> (file, line)
        self.torch = set()   # targets compiled against LibTorch
        self.links = {}      # name -> [(dep, propagates to consumers)]
        for rel in cmake_files(root):
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
                commands = cmake_commands(f.read())
            for line, name, args in commands:
                name = name.lower()
                if not args or args[0].startswith("$"):
                    continue  # inside a function body: ${target}, ${name}
                target = args[0]
                if name in ("add_library", "add_executable"):
                    self.targets.setdefault(target, (rel, line))
                elif name == "keel_torch_target":
                    self.torch.add(target)
                elif name == "target_link_libraries":
                    mode = True  # the plain signature propagates
                    for arg in args[1:]:
                        if arg in LINK_KEYWORDS:
                            mode = arg in ("PUBLIC", "INTERFACE", "LINK_PUBLIC", "LINK_INTERFACE_LIBRARIES")
                            continue
                        self.links.setdefault(target, []).append((arg, mode))
                        if arg in TORCH_LINKS:
                            self.torch.add(target)
                elif name == "keel_add_test":
                    self.targets.setdefault(target, (rel, line))
                    section = None
                    for arg in args[1:]:
                        if arg == "TORCH":
                            self.torch.add(target)
                        elif arg in ("SOURCES", "LIBS", "FIXTURES"):
                            section = arg
                        elif section == "LIBS":
                            self.links.setdefault(target, []).append((arg, False))

    def interface_torch(self, dep, seen=None):
        """The chain by which linking `dep` hands LibTorch's usage requirements on, or None."""
        seen = set() if seen is None else seen
        if dep in TORCH_LINKS:
            return [dep]
        if dep in seen:
            return None
        seen.add(dep)
        for sub, public in self.links.get(dep, ()):
            if public:
                chain = self.interface_torch(sub, seen)
                if chain:
                    return [dep] + chain
        return None

    def closure_find(self, start, predicate):
        """The link chain from `start` to the first dependency matching `predicate`, or None."""
        seen, queue = {start}, [[start]]
        while queue:
            path = queue.pop(0)
            for dep, _ in self.links.get(path[-1], ()):
                if predicate(dep):
                    return path + [dep]
                if dep not in seen:
                    seen.add(dep)
                    queue.append(path + [dep])
        return None

    def check(self):
        problems = []
        for target, (rel, line) in sorted(self.targets.items()):
            if target not in self.torch:
                for dep, _ in self.links.get(target, ()):
                    chain = self.interface_torch(dep)
                    if chain:
                        problems.append((rel, line, "torch-private",
                                         "%s does not compile against LibTorch but gets its usage requirements "
                                         "through %s (link Torch PRIVATE)" % (target, " -> ".join([target] + chain))))
                        break
            torch_chain = self.closure_find(target, lambda d: d in TORCH_LINKS or d in self.torch)
            if target in self.torch:
                torch_chain = torch_chain or [target]
            http_chain = self.closure_find(target, lambda d: bool(HTTP_LINK.match(d)))
            if torch_chain and http_chain:
                problems.append((rel, line, "http-link", "%s links LibTorch (%s) and prometheus-cpp/civetweb (%s)" % (
                    target, " -> ".join(torch_chain), " -> ".join(http_chain))))
            spm_chain = self.closure_find(target, lambda d: bool(SPM_LINK.match(d)))
            other_chain = torch_chain or self.closure_find(target, lambda d: bool(PROTO_LINK.match(d)))
            if spm_chain and other_chain:
                problems.append((rel, line, "spm-link", "%s links SentencePiece (%s) and libprotobuf (%s)" % (
                    target, " -> ".join(spm_chain), " -> ".join(other_chain))))
        return problems


# ---- running it ---------------------------------------------------------------------------------

def check(root, allowed=None):
    tree = Tree(root)
    problems = check_includes(tree, allowed) + LinkGraph(root).check()
    return tree, sorted(set(problems))


def report(root):
    tree, problems = check(root)
    for rel, line, rule, message in problems:
        print("%s:%d: [%s] %s" % (rel, line, rule, message) if line else "%s: [%s] %s" % (rel, rule, message))
    edges = sum(len(v) for v in tree.includes.values())
    if problems:
        print("check_layers: %d violation(s) in %d files (docs/architecture.md has the rules)"
              % (len(problems), len(tree.files)))
        return 1
    print("check_layers: OK, %d files, %d includes, %d folders" % (len(tree.files), edges, len(tree.tops)))
    return 0


def write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


CLEAN_TREE = {
    "common/check.h": "#pragma once\n#include <string>\n",
    "rpc/token.h": '#pragma once\n#include "common/check.h"\n',
    "rpc/client.cpp": '#include "rpc/token.h"\n#include "keel/v1/coordinator.grpc.pb.h"\n',
    "metrics/keys.cpp": '#include "common/check.h"\n/*\n#include <torch/torch.h>\n*/\n// #include "model/gpt.h"\n',
    "metrics/exporter.h": "#include <prometheus/registry.h>\n",
    "model/gpt.h": '#pragma once\n#include <torch/torch.h>\n#include "common/check.h"\n',
    "parallel/torch_adapter.cpp": '#include <torch/torch.h>\n#include "common/check.h"\n',
    "parallel/gradient_bucketer.h": "#include <ATen/ATen.h>\n",
    "worker/trainer.cpp": '#include "model/gpt.h"\n#include "rpc/token.h"\n',
    "cli/commands.h": "#pragma once\n",
    "cli/main.cpp": '#include "cli/commands.h"\n#include "worker/trainer.h"\n',
    "worker/trainer.h": "#pragma once\n",
    "tests/worker/test_trainer.cpp": '#include "worker/trainer.h"\n#include "model/gpt.h"\n',
    "CMakeLists.txt": (
        "function(keel_torch_target target)\n"
        "  target_link_libraries(${target} PRIVATE keel_torch_pch ${TORCH_LIBRARIES})\nendfunction()\n"
        "add_library(keel_model STATIC gpt.cpp)\n"
        "target_link_libraries(keel_model PUBLIC keel_common ${TORCH_LIBRARIES})\n"
        "keel_torch_target(keel_model)\n"
        "add_library(keel_worker STATIC trainer.cpp)  # Torch PRIVATE\n"
        "target_link_libraries(keel_worker PUBLIC keel_common\n  PRIVATE keel_model ${TORCH_LIBRARIES})\n"
        "keel_torch_target(keel_worker)\n"
        "add_executable(keel main.cpp)\ntarget_link_libraries(keel PRIVATE keel_worker)\n"
        "add_library(keel_metrics_prometheus STATIC e.cpp)\n"
        "target_link_libraries(keel_metrics_prometheus PUBLIC prometheus-cpp::pull \"a (quoted) )\")\n"
        "add_executable(keel-coordinator c.cpp)\n"
        "target_link_libraries(keel-coordinator PRIVATE keel_metrics_prometheus)\n"
        "keel_add_test(test_model TORCH SOURCES t.cpp LIBS keel_model)\n"),
}

# Each file (or CMake target's file) of BAD_TREE with the rules the checker must report for it.
BAD_TREE = {
    "metrics/torchy.cpp": ('#include <torch/torch.h>\n', {"torch-free"}),
    "stability/policy.cpp": ('#include "common/check.h"\n#include "model/gpt.h"\n', {"no-model", "layers"}),
    "common/bad.h": ('#include "rpc/token.h"\n', {"layers"}),
    "launch/job.cpp": ('#include "worker/trainer.h"\n', {"torch-free"}),  # through two headers
    "worker/trainer.h": ('#pragma once\n#include "parallel/gradient_bucketer.h"\n', set()),
    "coordinator/service.cpp": ('#include "worker/trainer.h"\n', {"layers", "torch-free"}),
    "rpc/uses_device.cpp": ('#include "device/select_device.h"\n', {"layers", "torch-free"}),
    "device/select_device.h": ('#pragma once\n#include <torch/torch.h>\n', set()),
    "worker/uses_cli.cpp": ('#include "cli/commands.h"\n', {"cli-private"}),
    "worker/proto_next_to_torch.cpp": ('#include <torch/torch.h>\n#include "rpc/impl.h"\n', {"proto-torch"}),
    "rpc/impl.h": ('#pragma once\n#include "keel/v1/coordinator.pb.h"\n', set()),
    "worker/http.cpp": ('#include "model/gpt.h"\n#include <prometheus/exposer.h>\n', {"http-torch"}),
    "newroom/thing.cpp": ('#include "common/check.h"\n', set()),
    "newroom/": ("", {"unknown"}),
    "kernels/raw.cu": ('#include <c10/cuda/CUDAStream.h>\n', {"torch-free"}),
    "kernels/raw_torch_cuda.cpp": ('#include <c10/cuda/CUDAStream.h>\n', set()),
    "bad/CMakeLists.txt": (
        "add_library(keel_leaky STATIC l.cpp)\ntarget_link_libraries(keel_leaky PUBLIC keel_model)\n"
        "keel_torch_target(keel_leaky)\n"
        "add_library(keel_launch STATIC j.cpp)\ntarget_link_libraries(keel_launch PUBLIC keel_leaky)\n"
        "add_executable(keel-bad-worker w.cpp)\n"
        "target_link_libraries(keel-bad-worker PRIVATE keel_worker keel_metrics_prometheus)\n"
        "add_library(keel_data_prepare STATIC p.cpp)\n"
        "target_link_libraries(keel_data_prepare PUBLIC keel_common PRIVATE PkgConfig::SENTENCEPIECE)\n"
        "add_executable(keel-bad-prepare p.cpp)\n"
        "target_link_libraries(keel-bad-prepare PRIVATE keel_data_prepare keel_coordinator_client)\n"
        "target_link_libraries(keel_coordinator_client PRIVATE keel_proto)\n",
        {"torch-private", "http-link", "spm-link"}),
}


def self_test():
    failures = []
    with tempfile.TemporaryDirectory(prefix="keel-check-layers-") as tmp:
        clean = os.path.join(tmp, "clean")
        write(clean, CLEAN_TREE)
        _, problems = check(clean)
        if problems:
            failures.append("a clean tree was reported: %s" % problems)

        bad = os.path.join(tmp, "bad")
        write(bad, CLEAN_TREE)
        write(bad, {rel: text for rel, (text, _) in BAD_TREE.items() if not rel.endswith("/")})
        _, problems = check(bad)
        found = {}
        for rel, line, rule, message in problems:
            found.setdefault(rel, set()).add(rule)
            if rel.endswith((".cpp", ".h", ".cu")) and line <= 0:
                failures.append("%s: [%s] reported without a line number" % (rel, rule))
        for rel, (_, rules) in sorted(BAD_TREE.items()):
            if rel.endswith("CMakeLists.txt"):
                continue
            got = found.get(rel, set())
            if got != rules:
                failures.append("%s: expected %s, got %s" % (rel, sorted(rules), sorted(got)))
        cmake_rules = found.get("bad/CMakeLists.txt", set())
        if cmake_rules != BAD_TREE["bad/CMakeLists.txt"][1]:
            failures.append("bad/CMakeLists.txt: expected %s, got %s" % (
                sorted(BAD_TREE["bad/CMakeLists.txt"][1]), sorted(cmake_rules)))
        for rule, target in (("torch-private", "keel_launch"), ("http-link", "keel-bad-worker"),
                             ("spm-link", "keel-bad-prepare")):
            if not any(r == rule and m.startswith(target + " ") for _, _, r, m in problems):
                failures.append("[%s] was not reported for target %s" % (rule, target))
        unexpected = set(found) - set(BAD_TREE)
        if unexpected:
            failures.append("violations in files that have none: %s" % sorted(unexpected))

        # The exit status and the file:line format of a real report.
        saved = sys.stdout
        with open(os.path.join(tmp, "report.txt"), "w") as out:
            sys.stdout = out
            try:
                status = report(bad)
            finally:
                sys.stdout = saved
        with open(os.path.join(tmp, "report.txt")) as f:
            text = f.read()
        if status != 1:
            failures.append("report() returned %d on a tree with violations" % status)
        if "metrics/torchy.cpp:1: [torch-free]" not in text:
            failures.append("the report lacks 'metrics/torchy.cpp:1: [torch-free]':\n" + text)

    cyclic = dict(ALLOWED, common={"rpc"})
    if not check_cycles(cyclic):
        failures.append("a cyclic folder graph (common -> rpc -> common) was not reported")
    if check_cycles(ALLOWED):
        failures.append("the real folder graph has a cycle: %s" % check_cycles(ALLOWED))

    for failure in failures:
        print("self-test: FAILED: " + failure)
    if failures:
        return 1
    print("check_layers self-test: OK (%d planted violations found, clean tree clean, cycles detected)"
          % sum(len(r) for _, r in BAD_TREE.values()))
    return 0


def main(argv):
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    args = list(argv)
    if args[:1] == ["--self-test"] and len(args) == 1:
        return self_test()
    if args[:1] == ["--graph"] and len(args) == 1:
        for folder in layer_order(ALLOWED):
            print("%-17s -> %s" % (folder, ", ".join(sorted(ALLOWED[folder])) or "-"))
        print("%-17s -> any folder above, not cli/ (except tests/cli/)" % " ".join(sorted(TOP)))
        return 0
    if len(args) == 2 and args[0] == "--root":
        root = args[1]
    elif args:
        print(__doc__, file=sys.stderr)
        return 2
    return report(root)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
