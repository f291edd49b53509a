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

/* Run one inference on int8 tensors sized as described. Return 0 on success. */
int td_invoke(const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TD_MODEL_API_H */
