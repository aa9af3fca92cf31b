"""The pipeline's stages, one module each, in the order a deploy runs them (support code lives beside this package).

    zoo model + weights --export.py--> model.float.onnx (simplified, parity-checked against PyTorch)
        --quantize.py (calibration data, accuracy budget)--> model.int8.onnx (QDQ)
        --compile.py (target)--> one artifact per backend and precision, each checked against float
        --verify.py--> parity against the float PyTorch model, layer by layer
        --profile.py (host, emulated board, SSH or TVM RPC)--> latency
        --deploy.py--> runs the chain with a cache per stage and writes report.json + report.html

Each stage reads the previous stage's files and writes its own, so any stage can be rerun alone (`edgemb export`,
`quantize`, `compile`, `verify`, `profile`). `deploy_guard.py` (settings, one run per folder, no stale verdict)
and `report_html.py` (report.json -> report.html) serve deploy and import no stage. Nothing here is imported
eagerly: `import edgemb.stages` stays light.
"""
