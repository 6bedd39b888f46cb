// The HTTP status number of a core status: what the HTTP front answers, and the status label
// of the request counter whatever the protocol (metrics.cpp). docs/serving.md has the table.
#pragma once

#include "serving/status.h"

namespace torchship::serving {

int http_status(Status status);

}  // namespace torchship::serving
