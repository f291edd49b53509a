/* Stand-in for the Chirale_TensorFlowLite library's main header (empty on purpose). */
#ifndef TD_STUB_CHIRALE_H
#define TD_STUB_CHIRALE_H
#endif
