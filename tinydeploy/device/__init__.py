"""The device side: everything that talks to a board or stands in for one.

``protocol`` (framing, COBS, CRC-32) and ``link`` (the host end: ``command()``/``check()``,
bounded retries, ``--trace``) speak to firmware; ``sim`` (the TFLM Python runtime on a pty),
``native`` (the generated firmware built with the host compiler) and ``qemu`` (bare-metal
Cortex-M4 firmware in QEMU) are boards that need no hardware; ``ptyproc`` runs them on
pseudo-terminals; ``flashing`` builds and uploads a generated project with PlatformIO.
The host pipeline (train, quantize, guard, facts, C array, arena, render, validation) lives
one level up and imports from here only where it reaches a device.
"""
