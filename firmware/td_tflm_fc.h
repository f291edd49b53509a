/* td_tflm_fc.h -- tinydeploy's int8 FULLY_CONNECTED kernel for TFLite Micro libraries whose
 * own kernel computes per-channel quantized weights wrong (TFLM before September 2024, e.g.
 * Chirale_TensorFLowLite 2.0.0: one weight scale for every output channel).
 *
 * The generated firmware registers it in place of the library's kernel:
 *   resolver.AddFullyConnected(td_fc_registration());
 * It computes what current TFLM's reference FULLY_CONNECTED computes, bit for bit:
 * Prepare derives one multiplier/shift per output channel from the per-channel weight
 * scales (input x weight / output scale in double, then TFLM's QuantizeMultiplier), or one
 * for per-tensor weights; Eval sums int8 products in int32 and
 * requantizes with TFLM's rounding. Batches are the output's leading dimensions (keep_num_dims
 * or not). int8 input, weights and output only; anything else is refused in Prepare.
 *
 * Speed: the weights are read in place; the input offset is folded into the bias in Prepare,
 * so Eval is plain int8 dot products, four outputs at a time sharing the input's sign
 * extension (td_fully_connected_plain: SXTB16/SMLAD where the Arm DSP extension exists,
 * firmware/td_kernels_fc_plain.c). A 512 -> 256 per-channel layer on qemu-cm4 with
 * Chirale_TensorFLowLite 2.0.0: 252,800 instructions per inference, 258,440 with the
 * library's CMSIS-NN kernel (which computes it wrong).
 *
 * Memory: the kernel's OpData (56 bytes on 32-bit targets, no larger than the library's
 * own FULLY_CONNECTED OpData) is the only thing it takes from the tensor arena, so every
 * arena figure of the library stays valid; its per-channel tables (folded bias, multiplier
 * and shift: at most 3 words per output channel) come from a static pool the generated
 * firmware declares with the size the generator counted (td_fc_set_pool), and from the
 * arena once that pool is used up (e.g. a second interpreter).
 */
#ifndef TD_TFLM_FC_H
#define TD_TFLM_FC_H

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"

namespace td_tflm {

void *FcInit(TfLiteContext *context, const char *buffer, size_t length);
TfLiteStatus FcPrepare(TfLiteContext *context, TfLiteNode *node);
TfLiteStatus FcEval(TfLiteContext *context, TfLiteNode *node);

}  // namespace td_tflm

/* Static storage (int32 words) for the per-channel tables; call before AllocateTensors(). */
void td_fc_set_pool(int32_t *words, size_t count);

/* The registration for MicroMutableOpResolver::AddFullyConnected(); its type is the
 * library's own (TfLiteRegistration, or TFLMRegistration in TFLM after March 2023). */
inline auto td_fc_registration() {
  return tflite::micro::RegisterOp(td_tflm::FcInit, td_tflm::FcPrepare, td_tflm::FcEval);
}

#endif /* TD_TFLM_FC_H */
