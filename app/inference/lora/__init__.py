"""LoRA adapters: reading every SD3.5 LoRA convention (formats), placing layers on our modules (mapping,
loading), merging or side-branching them into the loaded networks (applying), and finding LoRA files
(discovery)."""
