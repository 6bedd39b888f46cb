// Prepacked oneDNN convolutions for frozen TorchScript graphs. libtorch's aten::conv2d reorders
// its weight into oneDNN's blocked layout on every call, and optimize_for_inference on 2.x keeps
// most of that cost (ResNet34, 2 threads: 22.6 ms against 16.7 ms with the weights packed once).
// AOTInductor calls oneDNN's pointwise convolutions (mkldnn::_convolution_pointwise) with
// weights packed at compile time; this pass does the same to a frozen graph: every 2-D
// convolution of constant float weights becomes one such call, with a ReLU after it, or an
// addition followed by a ReLU (a residual block's tail), fused in where nothing else reads the
// intermediate values. libtorch 1.13 has no such operators: the pass then changes nothing.
#include "backends/prepacked_convolutions.h"

#include <ATen/Context.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/runtime/operator.h>

namespace torchship::backends {
namespace {

using torch::jit::Node;
using torch::jit::Value;

std::shared_ptr<torch::jit::Operator> operator_named(const char* name) {
  auto operators = torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(name));
  return operators.empty() ? nullptr : operators.front();
}

struct ConvolutionArguments {
  at::Tensor weight;
  c10::IValue bias;  // a tensor or None
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
};

// The constant arguments of `aten::conv2d(input, weight, bias, stride, padding, dilation,
// groups)`, when every one is a constant the pass can pack: fp32 or bf16 CPU weights, int-list
// padding (not "same").
std::optional<ConvolutionArguments> constant_arguments(Node* node) {
  static const auto conv2d = c10::Symbol::fromQualString("aten::conv2d");
  // Traced graphs keep the general form: (input, weight, bias, stride, padding, dilation,
  // transposed, output_padding, groups, benchmark, deterministic, cudnn_enabled[, allow_tf32]).
  static const auto convolution = c10::Symbol::fromQualString("aten::_convolution");
  std::vector<size_t> places;  // weight, bias, stride, padding, dilation, groups
  if (node->kind() == conv2d && node->inputs().size() == 7) {
    places = {1, 2, 3, 4, 5, 6};
  } else if (node->kind() == convolution && node->inputs().size() >= 12) {
    auto transposed = torch::jit::toIValue(node->input(6));
    if (!transposed || !transposed->isBool() || transposed->toBool()) return std::nullopt;
    places = {1, 2, 3, 4, 5, 8};
  } else {
    return std::nullopt;
  }
  std::vector<c10::IValue> values;
  for (size_t i : places) {
    auto value = torch::jit::toIValue(node->input(i));
    if (!value) return std::nullopt;
    values.push_back(*value);
  }
  if (!values[0].isTensor() || !(values[1].isTensor() || values[1].isNone())) return std::nullopt;
  for (size_t i = 2; i < 5; ++i) {
    if (!values[i].isIntList()) return std::nullopt;
  }
  if (!values[5].isInt()) return std::nullopt;
  ConvolutionArguments arguments;
  arguments.weight = values[0].toTensor();
  auto type = arguments.weight.scalar_type();
  if (arguments.weight.dim() != 4 || (type != at::kFloat && type != at::kBFloat16) ||
      !arguments.weight.device().is_cpu() || arguments.weight.is_mkldnn()) {
    return std::nullopt;
  }
  if (values[1].isTensor()) {
    const at::Tensor& bias = values[1].toTensor();
    if (bias.scalar_type() != type || !bias.device().is_cpu()) return std::nullopt;
  }
  arguments.bias = values[1];
  arguments.stride = values[2].toIntVector();
  arguments.padding = values[3].toIntVector();
  arguments.dilation = values[4].toIntVector();
  arguments.groups = values[5].toInt();
  return arguments;
}

bool is_relu(const Node* node) {
  static const auto relu = c10::Symbol::fromQualString("aten::relu");
  static const auto relu_ = c10::Symbol::fromQualString("aten::relu_");
  return node->kind() == relu || node->kind() == relu_;
}

// `aten::add(a, b, alpha=1)` or add_, where exactly one of a, b is `value`: the other operand.
Value* other_addend(const Node* node, const Value* value) {
  static const auto add = c10::Symbol::fromQualString("aten::add");
  static const auto add_ = c10::Symbol::fromQualString("aten::add_");
  if ((node->kind() != add && node->kind() != add_) || node->inputs().size() != 3) return nullptr;
  auto alpha = torch::jit::toIValue(node->input(2));
  if (!alpha ||
      !(alpha->isInt() ? alpha->toInt() == 1 : alpha->isDouble() && alpha->toDouble() == 1))
    return nullptr;
  Value* a = node->input(0);
  Value* b = node->input(1);
  // add_ writes into its first operand: only the convolution's own (fresh) output may be it.
  if (node->kind() == add_ && a != value) return nullptr;
  Value* other = a == value ? b : a;
  if (other == value || (a != value && b != value)) return nullptr;
  // oneDNN adds only a tensor of the output's own shape. A residual branch has it at every batch
  // size; a constant (a learned offset of batch 1) would match at the checked batch size and
  // fail at others.
  if (torch::jit::toIValue(other)) return nullptr;
  // oneDNN adds a tensor of the output's own type; a Python number is another overload.
  auto type = other->type()->cast<c10::TensorType>();
  if (!type || (type->scalarType() && *type->scalarType() != at::kFloat &&
                *type->scalarType() != at::kBFloat16)) {
    return nullptr;
  }
  return other;
}

// The single node that reads `value`, or nullptr when there are none or several (or the graph
// returns it).
Node* only_user(Value* value) {
  if (value->uses().size() != 1) return nullptr;
  Node* user = value->uses()[0].user;
  return user->kind() == c10::prim::Return ? nullptr : user;
}

// Whether `later` can be folded into `earlier`'s call: the fused call runs where `later` ran, so
// both must be in the same block, with nothing between them that writes into a tensor in place
// (an in-place aten operator, a node with blocks of its own), which could change what the
// convolution reads.
bool foldable(Node* earlier, Node* later) {
  if (later->owningBlock() != earlier->owningBlock() || !earlier->isBefore(later)) return false;
  for (Node* node = earlier->next(); node != later; node = node->next()) {
    if (!node->blocks().empty()) return false;
    const auto& kind = node->kind();
    std::string name = kind.toUnqualString();
    if (kind.is_aten() && !name.empty() && name.back() == '_') return false;
  }
  return true;
}

class Packer {
 public:
  Packer(torch::jit::Module& module, torch::jit::Graph& graph,
         std::shared_ptr<torch::jit::Operator> reorder)
      : module_(module), graph_(graph), reorder_(std::move(reorder)) {}

  // Rewrites every packable convolution of `block` and the blocks inside it.
  int rewrite(torch::jit::Block* block) {
    std::vector<std::pair<Node*, ConvolutionArguments>> convolutions;
    collect(block, convolutions);
    // A rewrite destroys the convolution and its ReLU / addition, never another convolution.
    for (auto& [node, arguments] : convolutions) replace(node, arguments);
    return static_cast<int>(convolutions.size());
  }

 private:
  void collect(torch::jit::Block* block,
               std::vector<std::pair<Node*, ConvolutionArguments>>& found) {
    for (Node* node : block->nodes()) {
      for (auto* inner : node->blocks()) collect(inner, found);
      if (auto arguments = constant_arguments(node)) found.emplace_back(node, *arguments);
    }
  }

  at::Tensor pack(const ConvolutionArguments& arguments) {
    torch::jit::Stack stack{arguments.weight,
                            c10::IValue(arguments.padding),
                            c10::IValue(arguments.stride),
                            c10::IValue(arguments.dilation),
                            arguments.groups,
                            c10::IValue()};
    reorder_->getOperation()(stack);
    return stack.back().toTensor();
  }

  void replace(Node* convolution, const ConvolutionArguments& arguments) {
    Value* result = convolution->output();
    std::vector<Node*> fused_away;  // the ReLU and addition folded in, in graph order
    Value* addend = nullptr;
    std::string unary = "none";
    Node* user = only_user(result);
    if (user && foldable(convolution, user)) {
      if (is_relu(user)) {
        unary = "relu";
        fused_away.push_back(user);
      } else if (Value* other = other_addend(user, result)) {
        addend = other;
        fused_away.push_back(user);
        Node* after = only_user(user->output());
        if (after && is_relu(after) && foldable(user, after)) {
          unary = "relu";
          fused_away.push_back(after);
        }
      }
    }
    Node* last = fused_away.empty() ? convolution : fused_away.back();
    torch::jit::WithInsertPoint guard(last);
    auto constant = [&](const c10::IValue& value) { return graph_.insertConstant(value); };
    // A oneDNN tensor has no strides for a graph constant to describe: it becomes an attribute
    // of the module, read just before the fused call.
    std::string name = "_torchship_packed_weight_" + std::to_string(packed_++);
    module_.register_attribute(name, c10::TensorType::get(), pack(arguments));
    Value* packed = graph_.insertNode(graph_.createGetAttr(graph_.inputs().at(0), name))->output();
    Value* none = constant(c10::IValue());
    Value* no_scalars =
        graph_.insertNode(graph_.createList(c10::OptionalType::create(c10::NumberType::get()), {}))
            ->output();
    std::vector<Value*> inputs{convolution->input(0)};
    if (addend) inputs.push_back(addend);
    for (Value* value :
         {packed, constant(arguments.bias), constant(arguments.padding), constant(arguments.stride),
          constant(arguments.dilation), constant(arguments.groups)}) {
      inputs.push_back(value);
    }
    if (addend) {
      inputs.push_back(constant(std::string("add")));
      inputs.push_back(none);  // alpha
      inputs.push_back(unary == "none" ? none : constant(unary));
    } else {
      inputs.push_back(constant(unary));
    }
    inputs.push_back(no_scalars);
    inputs.push_back(none);  // algorithm
    static const auto pointwise = c10::Symbol::fromQualString("mkldnn::_convolution_pointwise");
    Node* fused = graph_.insertNode(graph_.create(pointwise, inputs, 1));
    fused->output()->setType(c10::TensorType::get());
    last->output()->replaceAllUsesWith(fused->output());
    // From the last node back: each one's output is then unused.
    for (auto node = fused_away.rbegin(); node != fused_away.rend(); ++node) (*node)->destroy();
    convolution->destroy();
  }

  torch::jit::Module& module_;
  torch::jit::Graph& graph_;
  std::shared_ptr<torch::jit::Operator> reorder_;
  int packed_ = 0;
};

}  // namespace

bool can_prepack_convolutions() {
  return at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() &&
         operator_named("mkldnn::_convolution_pointwise") &&
         operator_named("mkldnn::_reorder_convolution_weight");
}

int prepack_convolutions(torch::jit::Module& frozen) {
  if (!can_prepack_convolutions()) return 0;
  auto graph = frozen.get_method("forward").graph();
  Packer packer(frozen, *graph, operator_named("mkldnn::_reorder_convolution_weight"));
  int rewritten = packer.rewrite(graph->block());
  if (rewritten > 0) torch::jit::EliminateDeadCode(graph->block());
  return rewritten;
}

}  // namespace torchship::backends
