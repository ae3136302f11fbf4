"""Software-defined assets and the domain code they run, one subpackage per stage.

Data flows one way: catalog -> embeddings -> index -> campaigns (-> review); index -> answers.
"""
