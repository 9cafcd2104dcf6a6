"""Using a trained model: ``vidreid.embed`` (:mod:`.inference`), result files (:mod:`.export`), ONNX export
(:mod:`.onnx_export`), the gallery index (:mod:`.index`) and scoring saved embeddings (:mod:`.score_npz`)."""
