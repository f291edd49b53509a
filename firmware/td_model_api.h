/* The two functions a generated model file provides to the native host program
 * (td_native_main.c): describe the model, run it once. See docs/protocol.md.
 */
#ifndef TD_MODEL_API_H
#define TD_MODEL_API_H

#include <stdint.h>

#include "td_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill model_sha256, input/output tensor info, scale/zero point, arena_size/arena_used and
 * runtime (e.g. "c"). firmware_version, board_id ("native") and cpu_hz are pre-filled with
 * defaults that the function may overwrite. */
void td_model_describe(td_info *info);

/* Run one inference: `in` holds all input tensors' bytes concatenated in model order,
 * `out` receives all outputs' likewise. Return 0 on success. A model whose
 * td_model_describe() binds the tensors' `data` (the C runtime: inputs and outputs inside its
 * memory plan) also takes NULL for either: the inputs are then read from, the outputs left
 * in, those bound buffers (no copies). */
int td_invoke(const int8_t *in, int8_t *out);

#ifdef TD_HAS_RESET
/* Reset the model's state (variable tensors of stateful models) to its initial values. */
void td_reset(void);
#endif

#ifdef __cplusplus
}
#endif

#endif /* TD_MODEL_API_H */
