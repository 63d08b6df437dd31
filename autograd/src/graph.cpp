// placeholder until graph export lands
