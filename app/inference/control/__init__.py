"""ControlNet at run time: control images to control latents, preprocessors, and the residuals a job adds."""
