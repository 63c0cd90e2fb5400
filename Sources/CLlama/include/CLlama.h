#pragma once
#include <llama.h>
// The CPU backend's threadpool API, to keep one pool of compute threads for the engine's life.
#include <ggml-cpu.h>
