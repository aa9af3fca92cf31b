"""edgemb: deploy MobileNets to edge boards and microcontrollers, with proof of parity."""

__version__ = "0.1.0"
