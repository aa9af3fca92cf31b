"""Running artifacts on boards: the device-side runner, the emulated board and remote devices."""
