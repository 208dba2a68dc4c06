using TorchSharp;
using static TorchSharp.torch;
var a = randn(64, 64, requires_grad: true);
var q = randn(2, 4, 100, 16); 
var o = nn.functional.scaled_dot_product_attention(q, q, q);
var l = (a.matmul(a)).sum(); l.backward();
System.Console.WriteLine($"ok {o.shape[2]} {a.grad!.shape[0]} threads={torch.get_num_threads()} {torch.__version__}");
