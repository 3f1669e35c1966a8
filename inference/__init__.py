"""lungscope inference engine: pure Python + torch, no Django.

The paper's pipeline (Hu et al. 2020, weakly supervised COVID-19 detection): load a CT study, normalise it with a
sliding histogram window, segment the lungs, classify lung slices with a multi-scale VGG, explain the decision with
Integrated Gradients per scale, and turn the joint saliency into boxes and a severity score.
"""
