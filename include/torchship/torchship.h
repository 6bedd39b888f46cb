// Everything an embedding application needs: #include <torchship/torchship.h>.
#pragma once

#include "torchship/archive.h"
#include "torchship/error.h"
#include "torchship/example_inputs.h"
#include "torchship/golden.h"
#include "torchship/image.h"
#include "torchship/image_batches.h"
#include "torchship/input_spec.h"
#include "torchship/limits.h"
#include "torchship/manifest.h"
#include "torchship/memory.h"
#include "torchship/model.h"
#include "torchship/runtime.h"
#include "torchship/tensor_io.h"
#include "torchship/value_tree.h"
#include "torchship/version.h"
#include "torchship/warnings.h"
