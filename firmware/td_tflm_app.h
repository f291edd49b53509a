/* tinydeploy firmware entry points (validation server): the generated td_tflm_app.cpp
 * (TFLite Micro) or td_c_app.cpp (C runtime) starts the model and serves the tinydeploy
 * protocol on Serial. The sketch's
 * setup()/loop() (or PlatformIO's main.cpp) only call these two, so the Arduino IDE's
 * automatic prototype generation never has to look at the application code. */
#ifndef TD_TFLM_APP_H
#define TD_TFLM_APP_H

/* Open Serial, create the interpreter, AllocateTensors(), send the boot HELLO. */
void td_app_setup(void);
/* Feed the bytes received on Serial to the protocol (answers HELLO and INFER). */
void td_app_loop(void);

#endif /* TD_TFLM_APP_H */
